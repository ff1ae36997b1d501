"""The exact backend: one matrix-vector product over the stored embeddings.

The default, and the reference every other backend is measured against. The matrix is the
generation's `embeddings.npy`, memory-mapped (float32, or float16 to halve memory and disk;
float16 rows are widened a block at a time, so a query never copies the whole matrix).
Exclusions set excluded scores to -inf on the score vector, never touching the matrix.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.backends.base import RankedRow, Ranking

if TYPE_CHECKING:
    from engine.index import PhotoIndex

BLOCK_ROWS = 8192  # float16 → float32 conversion block: 8k × 256 × 4 B = 8 MiB, cache-sized


# Below this many rows the float32 scan runs on one BLAS thread (see `scores_of`).
SINGLE_THREAD_ROWS = 250_000


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


class ExactBackend:
    """Scans every row; exact by construction, O(N·dim) per query."""

    name = "exact"

    def __init__(self, index: PhotoIndex) -> None:
        self.index = index

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        if len(self.index) == 0 or k <= 0:
            return Ranking([], 0)
        return rank_scores(scores_of(self.index.embeddings, query), k, exclude)

    def close(self) -> None:
        return None
