"""Cross-validation of the study's models: out-of-fold predictions, and scoring a subset of the
validation pairs again without refitting (the ablation reuses the main run that way)."""

from __future__ import annotations

import numpy as np
import pytest

from training.seed_study.evaluation import PairViews, cross_validate, rescore
from training.seed_study.models import ModelSettings, model_zoo
from training.seed_study.split import photo_folds


def _pairs(n: int = 240, seed: int = 0) -> PairViews:
    rng = np.random.default_rng(seed)
    seed_x = rng.normal(size=(n, 6)).astype(np.float32)
    dual_x = rng.normal(size=(n, 5)).astype(np.float32)
    y = np.clip(0.3 + 0.2 * seed_x[:, 0] + 0.05 * rng.normal(size=n), 0, 1).astype(np.float32)
    images = [f"p{int(i)}.jpg" for i in rng.integers(0, 30, size=n)]
    queries = [f"q{int(i)}" for i in rng.integers(0, 40, size=n)]
    return PairViews(views={"seed": seed_x, "dual": dual_x}, y=y, images=images,
                     queries=queries)


def test_rescoring_equals_cross_validating_with_score_rows() -> None:
    pairs = _pairs()
    folds = photo_folds(pairs.images, 4)
    specs = [s for s in model_zoo() if s.key in ("constant", "ridge")]
    settings = ModelSettings(seed=0, threads=1)
    rows = np.random.default_rng(1).random(len(pairs.y)) < 0.4
    full = cross_validate(specs, pairs, folds, settings, progress=False)
    direct = cross_validate(specs, pairs, folds, settings, score_rows=rows, progress=False)
    again = rescore(full, pairs, folds, rows, ["constant", "ridge"])
    for key in ("constant", "ridge"):
        assert len(again.folds[key]) == 4
        for mine, theirs in zip(again.folds[key], direct.folds[key], strict=True):
            assert mine.keys() == theirs.keys()
            for metric in mine:
                assert mine[metric] == pytest.approx(theirs[metric], nan_ok=True)
    # Every pair has exactly one out-of-fold prediction, made by a model that never saw it.
    predictions = full.predictions["constant"]
    assert np.isfinite(predictions).all()
    for fold in range(4):
        train = folds != fold
        assert np.allclose(predictions[folds == fold], pairs.y[train].mean(), atol=1e-6)
