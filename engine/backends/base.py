"""What every search backend provides: the best allowed rows of an index for one vector.

The embedded index (`engine.index.PhotoIndex`) owns a collection: photo paths, file
signatures, embeddings and child flags of the live generation. A backend is how its vectors
are searched: `exact` scans the (memory-mapped) matrix, `hnsw` walks a graph persisted next
to the embeddings, `milvus` asks a Milvus collection. All of them answer `ranked(query, k,
exclude)` with the same `Ranking`, so `SearchEngine`, the CLI and the bot never know which
one runs, and switching backends never re-embeds a photo: a backend is built from the stored
embeddings.

Rows are positions in the live generation; they change when photos are added or removed.
Backends that persist their own structure across generations (hnsw, milvus) key it by
`photo_key(path)`, a stable 63-bit hash of the photo's relative path, and map keys back to
rows with `KeyMap`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from engine.index import PhotoIndex


@dataclass(frozen=True)
class RankedRow:
    """One returned row: its score and the excluded rows ranked at or above it."""

    row: int
    score: float
    withheld_above: int


@dataclass(frozen=True)
class Ranking:
    """Rows best first, and how many excluded rows the unfiltered ranking put above the last
    returned one (every excluded row when fewer than k came back)."""

    rows: list[RankedRow]
    withheld: int


class SearchBackend(Protocol):
    """A way to search one index's vectors; built from the stored embeddings, never photos."""

    name: str

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        """The `k` best rows not excluded (`exclude`: bool per row, True = never return)."""
        ...

    def close(self) -> None:
        """Release files, connections and threads."""
        ...


class BackendError(Exception):
    """A backend that cannot be used as configured; the message says what to do."""


def photo_key(path: str) -> int:
    """Stable non-negative 63-bit key of a photo's relative path (same on every machine)."""
    digest = hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def photo_keys(paths: Sequence[str]) -> np.ndarray:
    """`photo_key` of every path, as int64 (one row per path)."""
    return np.fromiter((photo_key(p) for p in paths), dtype=np.int64, count=len(paths))


class KeyMap:
    """Maps photo keys back to rows of one generation by binary search (no 1M-entry dict)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self._order = np.argsort(self.keys, kind="stable")
        self._sorted = self.keys[self._order]

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where the generation has no such key."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(self._sorted) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.searchsorted(self._sorted, keys)
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = self._sorted[pos] == keys
        return np.where(found, self._order[pos], -1).astype(np.int64)


def ranking_from_candidates(rows: np.ndarray, scores: np.ndarray, k: int,
                            exclude: np.ndarray | None, exhaustive: bool) -> Ranking | None:
    """A `Ranking` from an unfiltered candidate list sorted best first (an ANN's answer).

    Excluded candidates are dropped and counted as withheld the way the exact scan counts
    them. Returns None when fewer than `k` allowed candidates remain and the list was not
    `exhaustive`: the caller must ask for more candidates (or scan exactly).
    """
    rows = np.asarray(rows, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    valid = rows >= 0
    rows, scores = rows[valid], scores[valid]
    if exclude is None or not len(rows):
        allowed_rows, allowed_scores = rows, scores
        excluded_scores = np.zeros(0, dtype=np.float32)
    else:
        hidden = np.asarray(exclude, dtype=bool)[rows]
        allowed_rows, allowed_scores = rows[~hidden], scores[~hidden]
        excluded_scores = scores[hidden]
    if len(allowed_rows) < k and not exhaustive:
        return None
    allowed_rows, allowed_scores = allowed_rows[:k], allowed_scores[:k]
    if not len(allowed_rows):
        return Ranking([], len(excluded_scores))
    last = float(allowed_scores[-1])
    above = np.sort(excluded_scores[excluded_scores >= last])
    ranked = [RankedRow(int(r), float(s), int(len(above) - np.searchsorted(above, s, "left")))
              for r, s in zip(allowed_rows, allowed_scores, strict=True)]
    withheld = len(excluded_scores) if len(allowed_rows) < k else len(above)
    return Ranking(ranked, withheld)


def stored_flags(index: PhotoIndex) -> np.ndarray:
    """The child flag of every row as the generation stores it (all False without one)."""
    flags = index.stored_flags()
    return flags if flags is not None else np.zeros(len(index), dtype=bool)


def over_fetch(k: int, exclude: np.ndarray | None, total: int) -> int:
    """How many unfiltered candidates to ask an ANN for so that `k` allowed ones are likely:
    k divided by the allowed share, with a margin (85% of a collection can be flagged)."""
    if exclude is None or total == 0:
        return min(k, total)
    allowed = max(1, total - int(np.count_nonzero(exclude)))
    return min(total, int(np.ceil(k * total / allowed * 1.5)) + 16)


def open_backend(kind: str, index: PhotoIndex, **options: object) -> SearchBackend:
    """The backend called `kind` over `index` (`exact`, `hnsw`, `milvus`)."""
    if kind == "exact":
        from engine.backends.exact import ExactBackend

        return ExactBackend(index)
    if kind == "hnsw":
        from engine.backends.hnsw import HnswBackend

        return HnswBackend.open(index, **options)  # type: ignore[arg-type]
    if kind == "milvus":
        from engine.backends.milvus import MilvusBackend

        return MilvusBackend.open(index, **options)  # type: ignore[arg-type]
    raise BackendError(f"unknown index backend {kind!r}: use exact, hnsw or milvus")
