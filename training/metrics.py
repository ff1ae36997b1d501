"""Retrieval and regression metrics, pure functions over arrays (no models, no I/O).

Ranks are 0-based: rank 0 means the relevant photo came first. Ties are broken against the
relevant photo (a photo scoring the same as the target counts as ranked above it), so a model
that scores everything equal gets the worst rank, not the best.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank of each row's target column: how many columns score at least as high, minus one.

    `scores` is (queries, photos); `targets` holds the relevant column per query.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    target_scores = scores[np.arange(len(targets)), targets]
    ranks: np.ndarray = (scores >= target_scores[:, None]).sum(axis=1) - 1
    return ranks


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose relevant photo is among the first `k`."""
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if len(ranks) else float("nan")


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    ranks = np.asarray(ranks)
    return float((1.0 / (ranks + 1)).mean()) if len(ranks) else float("nan")


def retrieval_report(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """`{"R@1": …, "R@5": …, "R@10": …, "MRR": …, "n": …}` from target ranks."""
    report = {f"R@{k}": recall_at(ranks, k) for k in ks}
    report["MRR"] = mean_reciprocal_rank(ranks)
    report["n"] = float(len(ranks))
    return report


def random_ranking_report(n_queries: int, n_photos: int, ks: Sequence[int] = (1, 5, 10)
                          ) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking (exact, not simulated)."""
    report = {f"R@{k}": min(k, n_photos) / n_photos for k in ks}
    report["MRR"] = float(np.mean(1.0 / np.arange(1, n_photos + 1)))
    report["n"] = float(n_queries)
    return report


def dcg(relevances: np.ndarray) -> float:
    """Discounted cumulative gain with the linear gain used by scikit-learn's ndcg_score."""
    relevances = np.asarray(relevances, dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, len(relevances) + 2))
    return float((relevances * discounts).sum())


def ndcg_at(true_relevance: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """nDCG@k of one query: order by `predicted` (ties: stable, worst case not assumed)."""
    true_relevance = np.asarray(true_relevance, dtype=np.float64)
    order = np.argsort(-np.asarray(predicted, dtype=np.float64), kind="stable")[:k]
    ideal = np.sort(true_relevance)[::-1][:k]
    best = dcg(ideal)
    return dcg(true_relevance[order]) / best if best > 0 else float("nan")
