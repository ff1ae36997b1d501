"""`SearchEngine`: legal check → encode → top-k over the index, in one call.

This is the whole query path the CLI and the bot share; neither adds logic of its own, so a
query refused in the CLI is refused in the bot and a ranking seen in one is seen in the other.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.encoders.base import Encoder
from engine.images import ImagePrep, open_photo, to_array
from engine.index import PhotoIndex
from engine.legal import LegalFilter, disclaimer

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000


class QueryError(ValueError):
    """A query the user must change (empty, too long); the message says how."""


@dataclass(frozen=True)
class Hit:
    """One result: the photo's path relative to the photo folder, its file and its score."""

    photo: str
    path: Path
    score: float


@dataclass(frozen=True)
class SearchResult:
    """What a search returns; `blocked` results carry the disclaimer and no hits."""

    query: str
    language: str
    blocked: bool
    message: str | None
    hits: list[Hit] = field(default_factory=list)
    model: str = ""
    reason: str | None = None
    elapsed_ms: float = 0.0
    legal_version: str = ""

    def to_json(self) -> dict[str, object]:
        """The CLI contract: {"query", "blocked", "message", "results": [{"photo", "score"}]}."""
        return {
            "query": self.query,
            "blocked": self.blocked,
            "message": self.message,
            "results": [{"photo": h.photo, "score": round(h.score, 6)} for h in self.hits],
        }


def validate_query(text: str) -> str:
    """Strip the text and refuse what cannot be searched, with a message saying what to do."""
    stripped = text.strip()
    if not stripped:
        raise QueryError("the query is empty: describe the photo you are looking for")
    if len(stripped) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is {len(stripped)} characters long; keep it under "
                         f"{MAX_QUERY_CHARS}")
    return stripped


class SearchEngine:
    """Ties an encoder, an index and the legal filter together."""

    def __init__(self, encoder: Encoder, index: PhotoIndex, legal: LegalFilter) -> None:
        index.require_model(encoder.name)
        self.encoder = encoder
        self.index = index
        self.legal = legal

    def search(self, text: str, k: int = 10, offset: int = 0) -> SearchResult:
        """Best `k` photos for a text (after skipping `offset`), or a refusal."""
        started = time.perf_counter()
        query = validate_query(text)
        verdict = self.legal.check_query(query)
        if not verdict.allowed:
            log.info("query refused: %s (lexicon %s)", verdict.reason, self.legal.fingerprint)
            return SearchResult(query=query, language=verdict.language, blocked=True,
                                message=disclaimer(verdict.language), model=self.encoder.name,
                                reason=verdict.reason, legal_version=self.legal.fingerprint,
                                elapsed_ms=(time.perf_counter() - started) * 1000)
        vector = self.encoder.encode_texts([query])[0]
        hits = self._top(vector, k, offset)
        return SearchResult(query=query, language=verdict.language, blocked=False, message=None,
                            hits=hits, model=self.encoder.name,
                            legal_version=self.legal.fingerprint,
                            elapsed_ms=(time.perf_counter() - started) * 1000)

    def search_by_photo(self, photo: Path | bytes, k: int = 10, offset: int = 0,
                        language: str = "en") -> SearchResult:
        """Photos that look like `photo` (image→image with the same encoder)."""
        started = time.perf_counter()
        prep: ImagePrep = self.encoder.image_prep
        vector = self.encoder.encode_pixels(to_array([open_photo(photo, prep)]))[0]
        hits = self._top(vector, k, offset)
        label = photo.name if isinstance(photo, Path) else "photo"
        return SearchResult(query=label, language=language, blocked=False, message=None,
                            hits=hits, model=self.encoder.name,
                            legal_version=self.legal.fingerprint,
                            elapsed_ms=(time.perf_counter() - started) * 1000)

    def _top(self, vector: np.ndarray, k: int, offset: int) -> list[Hit]:
        ranked = self.index.top_k(vector, k + offset)[offset:]
        photo_dir = self.index.photo_dir
        return [Hit(photo=self.index.paths[row], path=photo_dir / self.index.paths[row],
                    score=score) for row, score in ranked]
