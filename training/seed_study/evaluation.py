"""Cross-validation by photo and the retrieval test on the seed test set.

Validation (per fold, then mean ± std over folds): MSE, RMSE, MAE, Spearman rho over the
fold's pairs, nDCG@5 per validation query. Test: every model scores all 100 test photos for
every test query, ranks them, and Recall@1/5/10 and MRR are computed over the queries the
legal filter allows; refused queries are counted apart (the engine would answer them with a
disclaimer, not with photos).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from training.metrics import random_ranking_report, retrieval_report, target_ranks
from training.seed_study.metrics import regression_report, rerank_ranks, spread
from training.seed_study.models import ModelSettings, ModelSpec, PairModel, TrainingData
from training.seed_study.split import iter_folds

log = logging.getLogger(__name__)

PairBuilder = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class PairViews:
    """The pair vectors of one set of pairs, one matrix per feature view."""

    views: dict[str, np.ndarray]
    y: np.ndarray
    images: list[str]
    queries: list[str]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(x.shape) for name, x in self.views.items()}


@dataclass
class CVResult:
    """Per-model fold reports, their spread, and every pair's out-of-fold prediction."""

    folds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {key: spread(reports) for key, reports in self.folds.items()}


def rescore(result: CVResult, pairs: PairViews, folds: np.ndarray, score_rows: np.ndarray,
            keys: Sequence[str]) -> CVResult:
    """The fold reports of `keys` again, over the validation rows `score_rows` selects only.

    The same as re-running `cross_validate` with `score_rows` on the same pairs and folds
    (training is unchanged, only what is scored differs), without fitting anything again.
    """
    out = CVResult()
    queries = np.asarray(pairs.queries)
    for _, _, val in iter_folds(folds, pairs.images):
        scored = val[score_rows[val]]
        for key in keys:
            pred = result.predictions[key][scored]
            out.folds.setdefault(key, []).append(
                regression_report(pairs.y[scored], pred, queries[scored]))
    return out


def cross_validate(specs: Sequence[ModelSpec], pairs: PairViews, folds: np.ndarray,
                   settings: ModelSettings, score_rows: np.ndarray | None = None,
                   progress: bool = True) -> CVResult:
    """Fit every model on each fold's training photos and score its validation photos.

    `score_rows` (boolean over pairs) restricts which validation pairs are scored, e.g. only
    expert-labelled ones, while training still uses every training pair of the fold.
    """
    result = CVResult()
    data = {view: TrainingData(x, pairs.y, settings) for view, x in pairs.views.items()}
    queries = np.asarray(pairs.queries)
    steps = [(fold, train, val) for fold, train, val in iter_folds(folds, pairs.images)]
    bar = tqdm(total=len(steps) * len(specs), desc="cross-validation", unit="fit",
               disable=not progress)
    for fold, train, val in steps:
        scored = val if score_rows is None else val[score_rows[val]]
        for spec in specs:
            model = spec.build(settings)
            model.fit(data[spec.view], train)
            pred = np.asarray(model.predict(pairs.views[spec.view][val]), np.float64)
            result.predictions.setdefault(spec.key, np.full(len(pairs.y), np.nan))[val] = pred
            kept = np.ones(len(val), bool) if score_rows is None else score_rows[val]
            report = regression_report(pairs.y[scored], pred[kept], queries[scored])
            result.folds.setdefault(spec.key, []).append(report)
            log.info("fold %d %s: %s", fold, spec.key,
                     {k: round(v, 4) for k, v in report.items()})
            bar.update(1)
    bar.close()
    return result


def fit_all(spec: ModelSpec, pairs: PairViews, settings: ModelSettings) -> PairModel:
    """The model refitted on every training pair (what the test and the artifact use)."""
    model = spec.build(settings)
    model.fit(TrainingData(pairs.views[spec.view], pairs.y, settings),
              np.arange(len(pairs.y)))
    return model


@dataclass
class TestFeatures:
    """Per-query and per-photo features of the test set for every view."""

    text: dict[str, np.ndarray]
    image: dict[str, np.ndarray]
    builders: dict[str, PairBuilder]
    targets: np.ndarray
    allowed: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.targets)

    @property
    def n_photos(self) -> int:
        return len(next(iter(self.image.values())))


def score_matrix(model: PairModel, view: str, test: TestFeatures, block: int = 50
                 ) -> np.ndarray:
    """(queries, photos) scores: every query paired with every test photo."""
    text, image = test.text[view], test.image[view]
    n_photos = len(image)
    out = np.empty((len(text), n_photos), dtype=np.float64)
    for start in range(0, len(text), block):
        rows = text[start:start + block]
        left = np.repeat(rows, n_photos, axis=0)
        right = np.tile(image, (len(rows), 1))
        pred = model.predict(test.builders[view](left, right))
        out[start:start + len(rows)] = np.asarray(pred, np.float64).reshape(len(rows), n_photos)
    return out


def retrieval(scores: np.ndarray, test: TestFeatures) -> dict[str, float]:
    """Recall@1/5/10, MRR over allowed queries; `refused` counts the others."""
    allowed = test.allowed
    report = retrieval_report(target_ranks(scores[allowed], test.targets[allowed]))
    report["refused"] = float((~allowed).sum())
    return report


def retrieval_all(scores: np.ndarray, test: TestFeatures) -> dict[str, float]:
    """The same over all queries, as if no filter ran (for comparison with the study)."""
    return retrieval_report(target_ranks(scores, test.targets))


def combined_retrieval(first: np.ndarray, second: np.ndarray, test: TestFeatures, depth: int
                       ) -> dict[str, float]:
    """First stage retrieves the top `depth`, the second re-orders them."""
    allowed = test.allowed
    ranks = rerank_ranks(first[allowed], second[allowed], test.targets[allowed], depth)
    report = retrieval_report(ranks)
    report["refused"] = float((~allowed).sum())
    return report


def chance(test: TestFeatures) -> dict[str, float]:
    """Expected metrics of a random ranking over the allowed queries."""
    report = random_ranking_report(int(test.allowed.sum()), test.n_photos)
    report["refused"] = float((~test.allowed).sum())
    return report


def rounded(report: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in report.items()}
