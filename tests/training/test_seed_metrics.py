"""Metrics of the seed study against hand-computed examples (and the published worked examples
of the agreement statistics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from training.metrics import (
    mean_reciprocal_rank,
    ndcg_at,
    random_ranking_report,
    recall_at,
    retrieval_report,
    target_ranks,
)
from training.seed_study.agreement import (
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_agreement,
)
from training.seed_study.conclusion import change_verdict, conclusions, margin_verdict
from training.seed_study.metrics import (
    per_query_ndcg,
    regression_report,
    rerank_ranks,
    spearman,
    spread,
    top_photos,
)


def test_target_ranks_count_ties_against_the_target() -> None:
    scores = np.array([[0.1, 0.9, 0.5], [0.2, 0.2, 0.2], [0.7, 0.3, 0.7]])
    ranks = target_ranks(scores, np.array([1, 0, 0]))
    assert ranks.tolist() == [0, 2, 1]
    assert recall_at(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at(ranks, 2) == pytest.approx(2 / 3)
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    report = retrieval_report(ranks, ks=(1, 5))
    assert report["R@5"] == 1.0 and report["n"] == 3


def test_random_ranking_expectation() -> None:
    report = random_ranking_report(500, 100)
    assert report["R@1"] == pytest.approx(0.01) and report["R@5"] == pytest.approx(0.05)
    assert report["MRR"] == pytest.approx(sum(1 / r for r in range(1, 101)) / 100)


def test_ndcg_by_hand() -> None:
    # Ordered by prediction: relevances 2, 0, 1 (then 3).
    # DCG@3 = 2/1 + 0/log2(3) + 1/2 = 2.5; ideal 3, 2, 1 → 3 + 2/log2(3) + 1/2.
    value = ndcg_at(np.array([3, 2, 0, 1]), np.array([0.1, 0.9, 0.5, 0.3]), 3)
    assert value == pytest.approx(2.5 / (3 + 2 / math.log2(3) + 0.5))


def test_per_query_ndcg_skips_queries_that_say_nothing() -> None:
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    pred = np.array([0.0, 1.0, 0.2, 0.8, 0.3, 0.4, 0.9])
    queries = ["a", "a", "b", "b", "c", "c", "d"]  # c: no relevance, d: a single pair
    # a: order [1, 0] → relevances 0, 1 → (1/log2 3) / 1; b: order [3, 2] → ideal → 1.
    expected = (1 / math.log2(3) + 1.0) / 2
    assert per_query_ndcg(y, pred, queries) == pytest.approx(expected)


def test_regression_report_by_hand() -> None:
    y = np.array([0.0, 1.0, 0.0, 1.0])
    pred = np.array([0.0, 1.0, 1.0, 0.0])
    report = regression_report(y, pred, ["q"] * 4)
    assert report["mse"] == pytest.approx(0.5)
    assert report["rmse"] == pytest.approx(math.sqrt(0.5))
    assert report["mae"] == pytest.approx(0.5)
    assert report["spearman"] == pytest.approx(0.0)
    # order by prediction (stable): rows 1, 2, 0, 3 → relevances 1, 0, 0, 1
    ideal = 1 + 1 / math.log2(3)
    assert report["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / ideal)


def test_spearman_and_spread() -> None:
    assert spearman(np.array([1, 2, 3]), np.array([10, 20, 30])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.array([1, 2, 3]), np.array([5, 5, 5])))
    both = spread([{"a": 1.0, "b": float("nan")}, {"a": 3.0, "b": float("nan")}])
    assert both["mean"]["a"] == 2.0 and both["std"]["a"] == 1.0
    assert math.isnan(both["mean"]["b"])


def test_rerank_ranks_by_hand() -> None:
    first = np.array([[0.9, 0.8, 0.7, 0.1]] * 3)
    second = np.array([[0.0, 1.0, 2.0, 3.0]] * 3)
    # Top 2 by `first` are columns 0 and 1; `second` puts 1 before 0; the tail keeps order.
    ranks = rerank_ranks(first, second, np.array([1, 2, 3]), depth=2)
    assert ranks.tolist() == [0, 2, 3]
    tied = rerank_ranks(first[:1], np.array([[1.0, 1.0, 0.0, 0.0]]), np.array([0]), depth=2)
    assert tied.tolist() == [1]  # a tie in the second stage counts against the target
    assert top_photos(np.array([[0.1, 0.5, 0.5, 0.9]]), 3).tolist() == [[3, 1, 2]]


def test_krippendorff_alpha_reproduces_the_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units.
    n = np.nan
    coders = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
                       [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                       [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
                       [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert krippendorff_alpha(coders.T, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(coders.T, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(coders.T, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(np.array([[1, 1], [2, 2], [3, 3.0]])) == pytest.approx(1.0)


def test_fleiss_kappa_reproduces_the_published_example() -> None:
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories → 0.210.
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                       [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                       [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        fleiss_kappa(np.array([[1, 1], [2, 1]]))


def test_pairwise_agreement_by_hand() -> None:
    rows = pairwise_agreement(np.array([[1, 1, 2], [2, 2, 2], [3, 4, 1]], dtype=float))
    assert [r.raters for r in rows] == ["1–2", "1–3", "2–3"]
    assert rows[0].exact == pytest.approx(2 / 3)
    assert rows[1].mean_abs_diff == pytest.approx(1.0)


def test_verdicts() -> None:
    assert margin_verdict(0.60, 0.10) == "wide"
    assert margin_verdict(0.30, 0.20) == "narrow"
    assert margin_verdict(0.10, 0.20) == "none"
    assert change_verdict(0.50, 0.60, 0.05) == "helps"
    assert change_verdict(0.50, 0.40, 0.05) == "hurts"
    assert change_verdict(0.50, 0.52, 0.05) == "no clear effect"


def _metrics(dual_r5: float, ridge_r5: float) -> dict[str, Any]:
    reg = {k: {m: 0.05 for m in ("mse", "rmse", "mae", "spearman", "ndcg@5")}
           | {f"{m}_std": 0.01 for m in ("mse", "rmse", "mae", "spearman", "ndcg@5")}
           for k in ("constant", "ridge", "mlp", "dual_cosine", "dual_head")}
    reg["constant"]["mse"] = 0.06

    def ret(r5: float) -> dict[str, float]:
        return {"R@1": r5 / 3, "R@5": r5, "R@10": min(1.0, 1.5 * r5), "MRR": r5 / 2,
                "n": 331.0, "refused": 169.0}

    return {
        "regression": reg,
        "retrieval": {"constant": ret(0.0), "ridge": ret(ridge_r5), "mlp": ret(ridge_r5),
                      "dual_cosine": ret(dual_r5), "dual_head": ret(dual_r5)},
        "labels": {"constant": "Constant", "ridge": "Ridge", "mlp": "MLP",
                   "dual_cosine": "Dual", "dual_head": "Dual head"},
        "seed_style": ["ridge", "mlp"], "folds": 5, "depth": 30, "test_photos": 100,
        "chance": {"R@1": 0.01, "R@5": 0.05, "R@10": 0.1, "MRR": 0.05},
        "combination": {},
        "excluded": {"photos_flagged": 386, "pairs_restricted_query": 10, "pairs_kept": 5,
                     "pairs_before": 20,
                     "caption_thresholds": [{"min_captions": 1, "photos": 386},
                                            {"min_captions": 3, "photos": 294}]},
    }


def test_the_conclusion_follows_the_numbers() -> None:
    text = " ".join(conclusions(_metrics(dual_r5=0.60, ridge_r5=0.08)))
    assert "by a wide margin" in text and "60.0%" in text
    losing = " ".join(conclusions(_metrics(dual_r5=0.05, ridge_r5=0.08)))
    assert "does NOT beat" in losing and "wide margin" not in losing
    assert "294" in losing  # the threshold closest to the study's 303 photos is named
