"""The study's regressors and ours, behind one small interface.

Seed-style models (the customer's list) read the study's pair vector, text features ⊕ photo
features: a constant (the training mean), Ridge, a random forest, LightGBM and a 3-layer torch
network. Ours read the dual encoder's pair features (`engine.rerank.dual_pair_features`): its
cosine alone (linearly calibrated onto the 0–1 target, which changes no ranking) and a small
head on top. Sizes are chosen for a busy 2-core machine: the whole cross-validation must fit
in minutes, and the results are compared to the constant baseline, not to absolute numbers.

Every model except the forest exports an `engine.rerank` scorer, so the best one can be
loaded by the engine (a pickled forest would tie the artifact to one scikit-learn version).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from engine.rerank import LightGBMScorer, LinearScorer, PairMLP, Scorer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    """A fitted model as the engine stores it: scorer kind, scorer and layer widths."""

    kind: str
    scorer: Scorer
    layers: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelSettings:
    """What every model shares: the random seed and the CPU threads it may use."""

    seed: int = 0
    threads: int = 1
    mlp_epochs: int = 10


class TrainingData:
    """Pair vectors and targets of all folds; costly derived forms are built once.

    LightGBM spends most of its time binning 1.6k-wide features; the binned dataset is built
    once over all rows (bin edges come from feature quantiles, never from targets) and each
    fold trains on a subset of it.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, settings: ModelSettings) -> None:
        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y, np.float32)
        self.settings = settings
        self._binned: Any = None

    def lightgbm_dataset(self, params: dict[str, Any]) -> Any:
        import lightgbm

        if self._binned is None:
            self._binned = lightgbm.Dataset(self.x, self.y, params=params,
                                            free_raw_data=False)
            self._binned.construct()
        return self._binned


class PairModel(Protocol):
    """Fit on some rows of the pair vectors and 0–1 targets, predict a score per pair."""

    def fit(self, data: TrainingData, rows: np.ndarray) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def export(self) -> Exported | None: ...


class ConstantModel:
    """Predicts the training mean: the floor every MSE must be read against."""

    def __init__(self) -> None:
        self.value = 0.0

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        self.value = float(np.mean(data.y[rows]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value, dtype=np.float32)

    def export(self) -> Exported | None:
        return None


class RidgeModel:
    """Standardised features, L2-regularised linear regression (the study's "linear")."""

    def __init__(self, alpha: float = 3000.0) -> None:
        self.alpha = alpha
        self.coef = np.zeros(0, np.float32)
        self.intercept = 0.0

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        from sklearn.linear_model import Ridge

        x, y = data.x[rows], data.y[rows]
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        model = Ridge(alpha=self.alpha).fit((x - mean) / scale, y)
        # Fold the standardisation into the coefficients: the engine sees one dot product.
        self.coef = (model.coef_ / scale).astype(np.float32)
        self.intercept = float(model.intercept_ - float(np.dot(model.coef_, mean / scale)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return LinearScorer(self.coef, self.intercept).predict(x)

    def export(self) -> Exported | None:
        return Exported("linear", LinearScorer(self.coef, self.intercept))


class ForestModel:
    """scikit-learn random forest, kept shallow and subsampled to train in seconds."""

    def __init__(self, settings: ModelSettings, trees: int = 40) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.model = RandomForestRegressor(
            n_estimators=trees, max_depth=14, min_samples_leaf=5, max_features=0.03,
            max_samples=0.5, n_jobs=settings.threads, random_state=settings.seed)

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        self.model.fit(data.x[rows], data.y[rows])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x), dtype=np.float32)

    def export(self) -> Exported | None:
        return None


class LightGBMModel:
    """Gradient-boosted trees (LightGBM), feature-subsampled for the 1.6k-wide pair vectors."""

    def __init__(self, settings: ModelSettings, rounds: int = 200) -> None:
        self.rounds = rounds
        self.params: dict[str, Any] = {
            "objective": "regression", "learning_rate": 0.08, "num_leaves": 31,
            "min_data_in_leaf": 20, "feature_fraction": 0.2, "bagging_fraction": 0.8,
            "bagging_freq": 1, "max_bin": 63, "num_threads": settings.threads,
            "seed": settings.seed, "verbose": -1, "force_col_wise": True}
        self.booster: Any = None

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        import lightgbm

        train = data.lightgbm_dataset(self.params).subset(np.sort(rows))
        self.booster = lightgbm.train(self.params, train, num_boost_round=self.rounds)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(x, np.float32)), dtype=np.float32)

    def export(self) -> Exported | None:
        return Exported("lightgbm", LightGBMScorer(self.booster.model_to_string()))


class MLPModel:
    """A torch MLP (`engine.rerank.PairMLP`) trained with MSE, AdamW and fixed epochs.

    `hidden=(256, 64)` is the study's 3-layer network; `(64,)` is the small dual head.
    """

    def __init__(self, hidden: tuple[int, ...] = (256, 64), epochs: int = 10,
                 lr: float = 1e-3, dropout: float = 0.2, batch_size: int = 512,
                 weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.dropout = dropout
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed
        self.net: PairMLP | None = None

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        x, y = data.x[rows], data.y[rows]
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        net = PairMLP((x.shape[1], *self.hidden, 1), dropout=self.dropout)
        net.set_statistics(x)
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr,
                                      weight_decay=self.weight_decay)
        features = torch.from_numpy(np.asarray(x, np.float32))
        targets = torch.from_numpy(np.asarray(y, np.float32))
        net.train()
        for _ in range(self.epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for start in range(0, len(x), self.batch_size):
                batch = order[start:start + self.batch_size]
                loss = nn.functional.mse_loss(net(features[batch]), targets[batch])
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
        self.net = net.eval()

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit the model before predicting")
        return self.net.predict(x)

    def export(self) -> Exported | None:
        if self.net is None:
            return None
        return Exported("mlp", self.net, self.net.layers)


class CosineModel:
    """The dual encoder's cosine alone, mapped linearly onto the target (order unchanged).

    Reads the last column of `dual_pair_features` (the cosine). The linear map only puts it on
    the 0–1 scale so that its MSE is comparable; the slope is kept positive so the ranking
    stays the dual encoder's own.
    """

    def __init__(self) -> None:
        self.slope = 1.0
        self.intercept = 0.0
        self.width = 0

    def fit(self, data: TrainingData, rows: np.ndarray) -> None:
        x, y = data.x[rows], data.y[rows]
        cosine = x[:, -1].astype(np.float64)
        slope = float(np.polyfit(cosine, y, 1)[0]) if cosine.std() > 0 else 0.0
        self.slope = max(slope, 1e-6)
        self.intercept = float(np.mean(y) - self.slope * cosine.mean())
        self.width = x.shape[1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.slope * x[:, -1] + self.intercept).astype(np.float32)

    def export(self) -> Exported | None:
        coef = np.zeros(self.width, np.float32)
        coef[-1] = self.slope
        return Exported("linear", LinearScorer(coef, self.intercept))


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study: key, label, which pair features it reads, how to build it."""

    key: str
    label: str
    view: str  # "seed" (text ⊕ photo features) or "dual" (dual-encoder pair features)
    family: str  # "baseline", "seed-style" or "dual"
    build: Callable[[ModelSettings], PairModel]


def model_zoo() -> list[ModelSpec]:
    """Every model, in report order."""
    return [
        ModelSpec("constant", "Constant (training mean)", "seed", "baseline",
                  lambda s: ConstantModel()),
        ModelSpec("ridge", "Ridge (linear)", "seed", "seed-style", lambda s: RidgeModel()),
        ModelSpec("forest", "Random forest", "seed", "seed-style", ForestModel),
        ModelSpec("lightgbm", "LightGBM", "seed", "seed-style", LightGBMModel),
        ModelSpec("mlp", "3-layer network (torch)", "seed", "seed-style",
                  lambda s: MLPModel((256, 64), epochs=s.mlp_epochs, seed=s.seed)),
        ModelSpec("dual_cosine", "Dual encoder cosine", "dual", "dual",
                  lambda s: CosineModel()),
        ModelSpec("dual_head", "Dual encoder + small head", "dual", "dual",
                  lambda s: MLPModel((64,), epochs=20, dropout=0.1, seed=s.seed)),
    ]


def describe(model: PairModel) -> dict[str, Any]:
    """Hyper-parameters worth printing in a model card."""
    if isinstance(model, MLPModel):
        return {"hidden": list(model.hidden), "epochs": model.epochs, "lr": model.lr,
                "dropout": model.dropout, "batch_size": model.batch_size}
    if isinstance(model, RidgeModel):
        return {"alpha": model.alpha}
    if isinstance(model, LightGBMModel):
        return {"rounds": model.rounds, **{k: v for k, v in model.params.items()
                                           if k not in ("verbose", "num_threads")}}
    return {}
