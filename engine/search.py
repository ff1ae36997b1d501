"""`SearchEngine`: legal check → encode → top-k over the index, in one call.

This is the whole query path the CLI and the bot share; neither adds logic of its own, so a
query refused in the CLI is refused in the bot and a ranking seen in one is seen in the other.

Photos of children are never returned, whatever the query: every photo has a child score
(`engine.child_filter`), flagged photos and moderation blocks are excluded from the ranking,
and the next allowed photos fill the page. Precedence per photo: block override > allow
override > detector flag (`engine.moderation`). `SearchResult.withheld` says how many photos
the filter passed over: the excluded photos that the unfiltered ranking puts at or above the
last photo returned (ties count; from the top of the ranking, so with an `offset` it covers
the earlier pages too); when fewer than `k` photos come back because the allowed ones ran out,
every excluded photo counts. A query *photo* that itself shows a child (its score reaches the
threshold) is refused with the disclaimer, like a text query asking for children: answering
it would mean searching for children by example.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.backends.base import SearchBackend
from engine.backends.exact import ExactBackend
from engine.child_filter import ChildFilter, build_child_filter
from engine.encoders.base import Encoder, text_model_name
from engine.images import ImagePrep, open_photo, to_array
from engine.index import PhotoIndex
from engine.legal import LegalFilter, disclaimer
from engine.moderation import Exclusion, OverridesWatcher, apply_overrides

if TYPE_CHECKING:
    from engine.rerank import Reranker

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000

BackendFactory = Callable[[PhotoIndex], SearchBackend]


class QueryError(ValueError):
    """A query the user must change (empty, too long); the message says how."""


@dataclass(frozen=True)
class Hit:
    """One result: the photo's path relative to the photo folder, its file and its score."""

    photo: str
    path: Path
    score: float
    withheld_above: int = 0  # excluded photos ranked at or above this one


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
    withheld: int = 0
    filter_version: str = ""

    def to_json(self) -> dict[str, object]:
        """The CLI contract: {"query", "blocked", "message", "results": [{"photo", "score"}]},
        plus "withheld" (photos the child filter passed over) and "filter_version"."""
        return {
            "query": self.query,
            "blocked": self.blocked,
            "message": self.message,
            "results": [{"photo": h.photo, "score": round(h.score, 6)} for h in self.hits],
            "withheld": self.withheld,
            "filter_version": self.filter_version,
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
    """Ties an encoder, an index, the legal query filter and the photo-side child filter.

    `child_filter=None` means the default filter for the encoder (the packaged trained
    detector when it was trained for this encoder, else zero-shot prompts), so an engine is
    never unfiltered by omission; `ChildFilter.off()` switches the detector off explicitly
    (moderation blocks still apply).
    """

    def __init__(self, encoder: Encoder, index: PhotoIndex, legal: LegalFilter,
                 child_filter: ChildFilter | None = None,
                 reranker: Reranker | None = None,
                 backend: BackendFactory | None = None) -> None:
        index.require_model(encoder.name)
        # How the vectors are searched (`engine.backends`); a factory, so that an engine
        # rebuilt over a new generation (re-indexing) opens the same kind of backend.
        self.backend_factory: BackendFactory = backend or ExactBackend
        self.backend = self.backend_factory(index)
        if reranker is not None:
            reranker.check_encoder(encoder.name)
        # Optional second stage (`engine.rerank`): re-orders the allowed top `depth` of a
        # text search; it never adds a photo, so excluded photos stay excluded.
        self.reranker = reranker
        self.encoder = encoder
        self.index = index
        self.legal = legal
        self.child_filter = (child_filter if child_filter is not None
                             else build_child_filter(encoder.name, encoder=lambda: encoder))
        self._flags = self.child_filter.flags(index.child_scores(self.child_filter))
        self._signatures = index.signatures()
        self._overrides = OverridesWatcher(index.root)
        self._lock = threading.Lock()
        self._exclusion = self._exclude()
        log.info("child filter %s: %d of %d photos flagged, %d blocked and %d allowed by "
                 "moderation", self.child_filter.version, self._exclusion.flagged, len(index),
                 self._exclusion.blocked, self._exclusion.allowed)

    def close(self) -> None:
        """Release the backend (files, connections); the engine is unusable afterwards."""
        self.backend.close()

    def _exclude(self) -> Exclusion:
        return apply_overrides(self._flags, self.index.paths, self._signatures,
                               self._overrides.overrides)

    def exclusion(self) -> Exclusion:
        """The rows never to return, re-read when the moderation file changed."""
        with self._lock:
            if self._overrides.refresh():
                self._exclusion = self._exclude()
                log.info("moderation changed: %d blocked, %d allowed",
                         self._exclusion.blocked, self._exclusion.allowed)
            return self._exclusion

    @property
    def filter_version(self) -> str:
        """Everything that decides what is refused or hidden: lexicon, detector and its
        threshold, moderation overrides (logged with every search)."""
        return (f"legal={self.legal.fingerprint};child={self.child_filter.version};"
                f"mod={self._overrides.overrides.fingerprint}")[:128]

    def search(self, text: str, k: int = 10, offset: int = 0) -> SearchResult:
        """Best `k` allowed photos for a text (after skipping `offset`), or a refusal."""
        started = time.perf_counter()
        query = validate_query(text)
        verdict = self.legal.check_query(query)
        if not verdict.allowed:
            log.info("query refused: %s (lexicon %s)", verdict.reason, self.legal.fingerprint)
            return SearchResult(query=query, language=verdict.language, blocked=True,
                                message=disclaimer(verdict.language), model=self.encoder.name,
                                reason=verdict.reason, legal_version=self.legal.fingerprint,
                                filter_version=self.filter_version,
                                elapsed_ms=(time.perf_counter() - started) * 1000)
        vector = self.encoder.encode_texts([query])[0]
        hits, withheld = self._top(vector, k, offset, query)
        return SearchResult(query=query, language=verdict.language, blocked=False, message=None,
                            hits=hits, model=text_model_name(self.encoder),
                            legal_version=self.legal.fingerprint, withheld=withheld,
                            filter_version=self.filter_version,
                            elapsed_ms=(time.perf_counter() - started) * 1000)

    def search_by_photo(self, photo: Path | bytes, k: int = 10, offset: int = 0,
                        language: str = "en") -> SearchResult:
        """Allowed photos that look like `photo` (image→image with the same encoder); a query
        photo that itself shows a child is refused with the disclaimer."""
        started = time.perf_counter()
        prep: ImagePrep = self.encoder.image_prep
        vector = self.encoder.encode_pixels(to_array([open_photo(photo, prep)]))[0]
        label = photo.name if isinstance(photo, Path) else "photo"
        if self.child_filter.enabled:
            score = float(self.child_filter.scores(vector[None, :])[0])
            if score >= self.child_filter.threshold:
                reason = (f"the query photo shows a child (score {score:.3f} >= "
                          f"{self.child_filter.threshold:.3f})")
                log.info("photo query refused: %s (%s)", reason, self.child_filter.version)
                return SearchResult(query=label, language=language, blocked=True,
                                    message=disclaimer(language), model=self.encoder.name,
                                    reason=reason, legal_version=self.legal.fingerprint,
                                    filter_version=self.filter_version,
                                    elapsed_ms=(time.perf_counter() - started) * 1000)
        hits, withheld = self._top(vector, k, offset)
        return SearchResult(query=label, language=language, blocked=False, message=None,
                            hits=hits, model=self.encoder.name,
                            legal_version=self.legal.fingerprint, withheld=withheld,
                            filter_version=self.filter_version,
                            elapsed_ms=(time.perf_counter() - started) * 1000)

    def _top(self, vector: np.ndarray, k: int, offset: int, query: str | None = None
             ) -> tuple[list[Hit], int]:
        """The page of allowed hits and the withheld count (see the module docstring).

        With a re-ranker (text queries only) the first stage fetches at least its `depth`
        allowed photos and the re-ranker re-orders them before the page is cut; `withheld`
        then counts the excluded photos ranked above the lowest returned one.
        """
        exclusion = self.exclusion()
        mask = exclusion.mask if exclusion.excluded else None
        reranker = self.reranker if query is not None else None
        fetch = k + offset if reranker is None else max(k + offset, reranker.depth)
        ranking = self.backend.ranked(vector, fetch, exclude=mask)
        scored = [(r, r.score) for r in ranking.rows]
        if reranker is not None and query is not None:
            scored = reranker.rerank(query, vector, ranking.rows, self.index)
        photo_dir = self.index.photo_dir
        hits = [Hit(photo=self.index.paths[r.row], path=photo_dir / self.index.paths[r.row],
                    score=score, withheld_above=r.withheld_above)
                for r, score in scored[offset:offset + k]]
        withheld = ranking.withheld
        if fetch > k + offset and len(ranking.rows) == fetch:
            withheld = max((h.withheld_above for h in hits), default=0)
        log.info("search: %d hits, %d withheld, %d excluded in all (%s)", len(hits), withheld,
                 exclusion.excluded, self.filter_version)
        return hits, withheld
