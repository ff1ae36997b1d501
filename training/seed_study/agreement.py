"""Inter-annotator agreement: Krippendorff's alpha, Fleiss' kappa, pairwise agreement.

Pure functions over a (units × raters) matrix of scores with NaN for a missing score, so they
are tested on the published worked examples. Several statistics because they answer different
questions: alpha (interval/ordinal) respects that 1 vs 4 is a worse disagreement than 1 vs 2,
Fleiss' kappa treats the four scores as unordered classes, and the pairwise numbers show
whether one expert is the odd one out.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np


def _coincidences(ratings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their coincidence matrix (units with < 2 values drop out)."""
    ratings = np.asarray(ratings, dtype=np.float64)
    values = np.unique(ratings[~np.isnan(ratings)])
    index = {v: i for i, v in enumerate(values)}
    matrix = np.zeros((len(values), len(values)))
    for unit in ratings:
        present = unit[~np.isnan(unit)]
        if len(present) < 2:
            continue
        codes = [index[v] for v in present]
        counts = np.bincount(codes, minlength=len(values)).astype(np.float64)
        # every ordered pair of different raters: counts ⊗ counts minus the self-pairs
        matrix += (np.outer(counts, counts) - np.diag(counts)) / (len(present) - 1)
    return values, matrix


def krippendorff_alpha(ratings: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's alpha for `nominal`, `ordinal` or `interval` data (NaN = missing).

    1 = perfect agreement, 0 = agreement at chance, negative = systematic disagreement.
    """
    values, observed = _coincidences(ratings)
    totals = observed.sum(axis=1)
    n = totals.sum()
    if len(values) < 2 or n <= 1:
        return float("nan")
    if level == "nominal":
        delta = 1.0 - np.eye(len(values))
    elif level == "interval":
        delta = (values[:, None] - values[None, :]) ** 2
    elif level == "ordinal":
        cumulative = np.cumsum(totals)
        between = cumulative[None, :] - cumulative[:, None] + totals[:, None]
        upper = np.triu(between - (totals[:, None] + totals[None, :]) / 2)
        delta = (upper + upper.T) ** 2
    else:
        raise ValueError(f"unknown level {level!r}; use nominal, ordinal or interval")
    expected = np.outer(totals, totals)
    return float(1.0 - (n - 1) * (observed * delta).sum() / (expected * delta).sum())


def fleiss_kappa(category_counts: np.ndarray) -> float:
    """Fleiss' kappa from a (subjects × categories) matrix of how many raters chose each.

    Every subject must have the same number of raters.
    """
    counts = np.asarray(category_counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (≥ 2) of raters per subject")
    n = raters[0]
    per_subject = ((counts ** 2).sum(axis=1) - n) / (n * (n - 1))
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares ** 2).sum())
    return float((per_subject.mean() - chance) / (1.0 - chance))


def category_counts(ratings: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """(units × categories) counts for Fleiss' kappa from complete (units × raters) ratings."""
    ratings = np.asarray(ratings)
    return np.stack([(ratings == c).sum(axis=1) for c in categories], axis=1)


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two raters (1-based numbers) over the units both scored."""

    raters: str
    exact: float
    mean_abs_diff: float
    kappa_quadratic: float


def pairwise_agreement(ratings: np.ndarray) -> list[PairAgreement]:
    """Per pair of raters: share of identical scores, mean |difference|, weighted kappa."""
    from sklearn.metrics import cohen_kappa_score

    ratings = np.asarray(ratings, dtype=np.float64)
    rows = []
    for a, b in combinations(range(ratings.shape[1]), 2):
        both = ~np.isnan(ratings[:, a]) & ~np.isnan(ratings[:, b])
        x, y = ratings[both, a], ratings[both, b]
        if not len(x):
            continue
        rows.append(PairAgreement(
            raters=f"{a + 1}–{b + 1}", exact=float((x == y).mean()),
            mean_abs_diff=float(np.abs(x - y).mean()),
            kappa_quadratic=float(cohen_kappa_score(x.astype(int), y.astype(int),
                                                    weights="quadratic"))))
    return rows
