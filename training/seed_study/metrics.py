"""Regression and ranking metrics of the seed study, pure functions over arrays.

Regression metrics say how close predicted scores are to the annotated ones; they say little
about search, so each fold also reports nDCG@5 per validation query (how well the model
orders the photos annotated for that query) and the test set is measured as retrieval
(`training.metrics`: Recall@K, MRR, pessimistic ties).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from training.metrics import ndcg_at

REGRESSION_KEYS = ("mse", "rmse", "mae", "spearman", "ndcg@5")


def spearman(y: np.ndarray, pred: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties; NaN when either side is constant."""
    from scipy.stats import rankdata

    a, b = rankdata(np.asarray(y, np.float64)), rankdata(np.asarray(pred, np.float64))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def per_query_ndcg(y: np.ndarray, pred: np.ndarray, queries: Sequence[str], k: int = 5
                   ) -> float:
    """Mean nDCG@k over queries with at least two pairs and some relevance (others say nothing).

    Ties in `pred` keep the rows' order, so callers shuffle rows once beforehand: a constant
    model then scores a random ordering, not the order of the files.
    """
    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    keys = np.asarray(queries)
    order = np.argsort(keys, kind="stable")
    boundaries = np.flatnonzero(keys[order][1:] != keys[order][:-1]) + 1
    values = []
    for rows in np.split(order, boundaries):
        rows = np.sort(rows)  # back to the rows' own order within the query
        if len(rows) < 2 or y[rows].max() <= 0:
            continue
        values.append(ndcg_at(y[rows], pred[rows], k))
    return float(np.mean(values)) if values else float("nan")


def regression_report(y: np.ndarray, pred: np.ndarray, queries: Sequence[str]
                      ) -> dict[str, float]:
    """MSE, RMSE, MAE, Spearman rho and per-query nDCG@5 of one validation fold."""
    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    mse = float(np.mean((y - pred) ** 2))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(y - pred))),
            "spearman": spearman(y, pred), "ndcg@5": per_query_ndcg(y, pred, queries, 5)}


def spread(reports: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """{"mean": {...}, "std": {...}} over folds (population std; NaN-aware)."""
    keys = list(reports[0]) if reports else []
    table = np.array([[r[k] for k in keys] for r in reports], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        means = [float(np.nanmean(c)) if np.isfinite(c).any() else float("nan")
                 for c in table.T]
        stds = [float(np.nanstd(c)) if np.isfinite(c).any() else float("nan") for c in table.T]
    return {"mean": dict(zip(keys, means, strict=True)),
            "std": dict(zip(keys, stds, strict=True))}


def rerank_ranks(first: np.ndarray, second: np.ndarray, targets: np.ndarray, depth: int
                 ) -> np.ndarray:
    """0-based rank of each query's target when `second` re-orders the top `depth` of `first`.

    The top `depth` are taken by `first` (stable order); within them `second` decides, below
    them `first` does. Ties count against the target, as in `training.metrics.target_ranks`.
    """
    first = np.asarray(first, np.float64)
    second = np.asarray(second, np.float64)
    ranks = np.empty(len(targets), dtype=np.int64)
    for q, target in enumerate(np.asarray(targets, dtype=np.int64)):
        order = np.argsort(-first[q], kind="stable")
        head, tail = order[:depth], order[depth:]
        if target in head:
            ranks[q] = int((second[q, head] >= second[q, target]).sum()) - 1
        else:
            ranks[q] = len(head) + int((first[q, tail] >= first[q, target]).sum()) - 1
    return ranks


def top_photos(scores: np.ndarray, k: int) -> np.ndarray:
    """(queries, k) column indices of the best-scored photos (stable order for ties)."""
    result: np.ndarray = np.argsort(-np.asarray(scores, np.float64), axis=1, kind="stable")[:, :k]
    return result
