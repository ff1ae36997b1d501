"""The exact backend: one matrix-vector product over the stored embeddings.

The default, and the reference every other backend is measured against. The matrix is the
generation's `embeddings.npy`, memory-mapped (float32, or float16 to halve memory and disk;
float16 rows are widened a block at a time, so a query never copies the whole matrix).
Exclusions set excluded scores to -inf on the score vector, never touching the matrix.

From `HALF_SCAN_ROWS` rows on, a query first scores a float16 copy of the matrix in torch
(memory-bound: half the bytes, and torch's float16 matrix-vector kernel is fast here), then
re-scores in float32 every row that could reach the top k. Results, scores and withheld
counts are those of the float32 scan; at 100k rows it took 3.3 ms instead of ~10 (README).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.backends.base import RankedRow, Ranking, ranking_from_candidates

if TYPE_CHECKING:
    from engine.index import PhotoIndex

BLOCK_ROWS = 8192  # float16 → float32 conversion block: 8k × 256 × 4 B = 8 MiB, cache-sized


# Below this many rows the float32 scan runs on one BLAS thread (see `scores_of`).
SINGLE_THREAD_ROWS = 250_000
# From this many rows on the exact backend pre-scores a float16 copy (see `HalfPrecisionScan`).
HALF_SCAN_ROWS = 20_000
# Bound on |float16 score - float32 score| for unit vectors, doubled for safety: rounding the
# query and a row to float16 each moves the product by at most 2^-11 (torch accumulates in
# float32; the largest error measured over 100k rows was 1.6e-4).
HALF_SCORE_ERROR = 2e-3


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, built once, on first use."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def scores_of(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Dot product of every row with `query`, float32, without copying a float32 matrix.

    float32: numpy's product (OpenBLAS; torch's matrix-vector kernel is 2.5x slower here),
    on ONE thread below `SINGLE_THREAD_ROWS`. A two-thread product wakes OpenBLAS's pool,
    whose threads keep spinning afterwards and starve the next query's text towers in torch's
    pool: at 100k rows the scan took 5 ms instead of 9.5, but the next text encoding 23 ms
    instead of 14 (search p50 30 ms against 20 ms single-threaded). Larger scans gain more
    from the second core than the spinning costs.
    float16 rows are widened by torch a cache-sized block at a time: numpy's float16→float32
    conversion is scalar (100k × 256 took 50 ms here, torch 7 ms against 3.5 ms for float32).
    """
    query = np.asarray(query, dtype=np.float32)
    if matrix.dtype == np.float32:
        threads = (contextlib.nullcontext() if len(matrix) >= SINGLE_THREAD_ROWS
                   else _blas_controller().limit(limits=1, user_api="blas"))
        with threads:
            return np.asarray(matrix @ query)
    import torch

    with warnings.catch_warnings():  # a read-only memory map: torch only reads it
        warnings.simplefilter("ignore", UserWarning)
        rows = torch.from_numpy(np.asarray(matrix))
    vector = torch.from_numpy(query)
    out = torch.empty(len(matrix), dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(matrix), BLOCK_ROWS):
            block = rows[start:start + BLOCK_ROWS]
            out[start:start + len(block)] = block.to(torch.float32) @ vector
    return out.numpy()


def rank_scores(raw: np.ndarray, k: int, exclude: np.ndarray | None) -> Ranking:
    """The `k` best rows of a full score vector, skipping excluded rows, with withheld counts.

    `Ranking.withheld` counts the excluded rows the unfiltered ranking puts at or above the
    last row returned (ties count as above); when fewer than `k` rows come back (the allowed
    rows ran out) every excluded row counts, since each would have filled one of the empty
    places. `RankedRow.withheld_above` is the same count for each row, so a caller paging
    through results can tell how many were withheld within one page.
    """
    if len(raw) == 0 or k <= 0:
        return Ranking([], 0)
    excluding = exclude is not None and bool(exclude.any())
    scores = np.where(exclude, -np.inf, raw) if exclude is not None and excluding else raw
    take = min(k, len(scores))
    top = np.argpartition(-scores, take - 1)[:take]
    top = top[np.argsort(-scores[top], kind="stable")]
    rows = [(int(row), float(scores[row])) for row in top if np.isfinite(scores[row])]
    if not excluding:
        return Ranking([RankedRow(row, score, 0) for row, score in rows], 0)
    excluded_scores = raw[exclude]
    if not rows:
        return Ranking([], int(np.count_nonzero(~np.isnan(excluded_scores))))
    # Excluded scores at or above the last returned one, ascending, to count per row.
    above = np.sort(excluded_scores[excluded_scores >= rows[-1][1]])
    ranked = [RankedRow(row, score, int(len(above) - np.searchsorted(above, score, side="left")))
              for row, score in rows]
    withheld = int(np.count_nonzero(~np.isnan(excluded_scores))) if len(rows) < k else len(above)
    return Ranking(ranked, withheld)


class HalfPrecisionScan:
    """Exact top-k over a large matrix at the cost of a float16 scan.

    Every row is scored against a float16 copy of the matrix (built on the first query, half
    the float32 size, kept in RAM). A row's float16 score is within `HALF_SCORE_ERROR` (times
    the norms) of its float32 score, so only rows whose float16 score is within twice that of
    the k-th best allowed one can be in the top k or count as withheld above it; those few
    rows are re-scored from the stored matrix and ranked alone (as an ANN's candidates are):
    every other row lies below every returned row either way.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        import torch

        self.matrix = matrix
        rows = np.asarray(matrix)
        with warnings.catch_warnings():  # a read-only memory map: torch only reads it
            warnings.simplefilter("ignore", UserWarning)
            stored = torch.from_numpy(rows)
        self.half = stored if rows.dtype == np.float16 else torch.cat(
            [stored[start:start + BLOCK_ROWS].half()
             for start in range(0, len(rows), BLOCK_ROWS)])
        self.row_norm = max((float(self.half[start:start + BLOCK_ROWS].float().norm(dim=1).max())
                             for start in range(0, len(rows), BLOCK_ROWS)), default=0.0)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Approximate scores of every row (float32 vector)."""
        import torch

        with torch.inference_mode():
            vector = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32)).half()
            return torch.mv(self.half, vector).float().numpy()

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None) -> Ranking:
        query = np.asarray(query, dtype=np.float32)
        scores = self.scores(query)
        allowed = scores if exclude is None else np.where(exclude, -np.inf, scores)
        take = min(k, len(scores))
        # The k-th best allowed score. (np.partition from the top end is slow here when many
        # scores are -inf: 9 ms at 100k rows with 85% excluded, against 0.6 ms.)
        kth = float(allowed[np.argpartition(-allowed, take - 1)[take - 1]])
        margin = 2 * HALF_SCORE_ERROR * float(np.linalg.norm(query)) * max(self.row_norm, 1.0)
        if not np.isfinite(kth):  # fewer than k allowed rows: every row matters
            return rank_scores(scores_of(self.matrix, query), k, exclude)
        band = np.flatnonzero(scores >= kth - margin)
        exact = np.asarray(self.matrix[band], dtype=np.float32) @ query
        order = np.argsort(-exact, kind="stable")
        # The band holds every row that can be returned or withheld above the last one, and at
        # least k allowed rows: ranking it alone is ranking the whole matrix.
        ranking = ranking_from_candidates(band[order], exact[order], k, exclude,
                                          exhaustive=True)
        assert ranking is not None  # exhaustive: never asks for more candidates
        return ranking


class ExactBackend:
    """Scans every row; exact by construction, O(N·dim) per query."""

    name = "exact"

    def __init__(self, index: PhotoIndex) -> None:
        self.index = index

    @functools.cached_property
    def _half_scan(self) -> HalfPrecisionScan:
        return HalfPrecisionScan(self.index.embeddings)

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        if len(self.index) == 0 or k <= 0:
            return Ranking([], 0)
        if len(self.index) >= HALF_SCAN_ROWS:
            return self._half_scan.ranked(query, k, exclude)
        return rank_scores(scores_of(self.index.embeddings, query), k, exclude)

    def close(self) -> None:
        return None
