"""Optional second stage of a search: a trained pair scorer re-orders the first stage's top k'.

The seed study (`python -m training seed-study`) trains regressors that predict how well one
text matches one photo. Such a scorer cannot search a collection by itself (it would have to
score every photo for every query), but it can re-order the few photos the dual encoder
retrieved. This module holds everything both sides must agree on, so that training and
inference can never disagree: the feature extractors, how a (query, photo) pair becomes a
vector, the scorer architectures and the artifact format.

Two kinds of pair features:

- ``seed``: the customer study's recipe, text-tower features of the query concatenated with
  image-tower features of the photo (MiniLM or a local Hugging Face BERT; EfficientNet-Lite0
  or a local ResNet-18). Cost per query: the text tower on the query plus the image tower on
  every candidate not seen before; photo features are then kept in memory (LRU keyed by path,
  size and mtime, 1280 floats each), so repeated candidates cost nothing. Measured on one
  thread of the shared 2-core development machine under load: MiniLM 40 ms per query;
  30 new seed photos (JPEG decode + EfficientNet-Lite0) 3.3 s, the same 30 cached 0.5 ms. A
  first query can thus take seconds; warm the cache by re-ranking common queries at start.
- ``dual``: built from the dual encoder's own embeddings (the element-wise product of query
  and photo vectors plus their cosine). Costs nothing beyond the scorer: the query vector is
  the one the first stage computed and photo vectors are the index rows. It only works with
  the dual-encoder model it was trained on (checked when the engine starts).

The re-ranker only re-orders the candidates it is given: it never adds a photo the first stage
did not return, so photos the first stage excluded stay excluded.

Artifact directory: ``config.json`` (format, name, version, features, scorer, layer sizes),
``weights.safetensors`` (linear and MLP scorers) or ``model.txt`` (LightGBM), ``metrics.json``
and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine.encoders.towers import EfficientNetLiteTower, MiniLMTower, l2_normalize
from engine.fileops import staged_directory
from engine.images import ImagePrep, UnreadablePhotoError, open_photo, to_array

if TYPE_CHECKING:
    from engine.index import PhotoIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PHOTO_CACHE_SIZE = 20_000


class RerankerError(ValueError):
    """A re-ranker artifact that is missing, incomplete or unusable here (user-fixable)."""


class Candidate(Protocol):
    """A first-stage result: an index row and its score (e.g. `engine.index.RankedRow`)."""

    @property
    def row(self) -> int: ...

    @property
    def score(self) -> float: ...


C = TypeVar("C", bound=Candidate)


# ------------------------------------------------------------------------ feature extractors


class TextFeatures(Protocol):
    """A frozen text tower: texts → (N, dim) float32 rows."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class ImageFeatures(Protocol):
    """A frozen image tower: uint8 (N, S, S, 3) pixels squashed to `input_size` → (N, dim)."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def input_size(self) -> int: ...

    def features(self, pixels: np.ndarray) -> np.ndarray: ...


class HFMeanPoolTower:
    """Any local Hugging Face BERT-family model directory, mean-pooled and L2-normalised.

    The customer's study vectorised queries with BERT; this lets the study (and the re-ranker)
    use such a model from a local path. Nothing is downloaded (`local_files_only`).
    """

    def __init__(self, path: Path, max_tokens: int = 128) -> None:
        if not path.is_dir():
            raise RerankerError(f"text model directory not found: {path}")
        self.path = path
        self.max_tokens = max_tokens
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"hf:{self.path.resolve()}"

    @cached_property
    def _model(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        return tokenizer, model

    @property
    def dim(self) -> int:
        return int(self._model[1].config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        tokenizer, model = self._model
        out: list[np.ndarray] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start:start + batch_size]), padding=True,
                                  truncation=True, max_length=self.max_tokens,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))


class MiniLMText:
    """The packaged MiniLM tower behind the `TextFeatures` protocol."""

    name = "minilm"
    dim = MiniLMTower.dim

    def __init__(self) -> None:
        self._tower = MiniLMTower()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._tower.encode(texts)


class LiteImage:
    """EfficientNet-Lite0's global average (1280-d): the offline stand-in for ResNet-18."""

    name = "lite0"
    dim = 1280
    input_size = 224

    def __init__(self) -> None:
        self._tower = EfficientNetLiteTower("lite0")

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self._tower.features(pixels)["final_mean"], dtype=np.float32)


class ResNet18Image:
    """torchvision's ResNet-18 with ImageNet weights from a local file (no download).

    The file is a state dict (`torch.save(model.state_dict(), path)`, optionally wrapped in
    {"state_dict": ...}). Output: the 512-d global average before the classifier.
    """

    dim = 512
    input_size = 224

    def __init__(self, weights: Path) -> None:
        if not weights.is_file():
            raise RerankerError(f"ResNet-18 weights file not found: {weights}")
        self.weights = weights
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"resnet18:{self.weights.resolve()}"

    @cached_property
    def model(self) -> nn.Module:
        from torchvision.models import resnet18

        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model: nn.Module = resnet18(weights=None)
        model.load_state_dict(state)
        model.fc = nn.Identity()
        model.eval()
        return model

    def features(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD)[None, :, None, None]
        with self._lock, torch.inference_mode():
            out: torch.Tensor = self.model((x - mean) / std)
        return out.numpy().astype(np.float32)


def make_text_features(spec: str) -> TextFeatures:
    """`minilm` (packaged) or `hf:/path/to/bert` (a local Hugging Face model directory)."""
    if spec == "minilm":
        return MiniLMText()
    if spec.startswith("hf:"):
        return HFMeanPoolTower(Path(spec[3:]))
    raise RerankerError(f"unknown text features {spec!r}; use minilm or hf:/path")


def make_image_features(spec: str) -> ImageFeatures:
    """`lite0` (packaged EfficientNet-Lite0) or `resnet18:/path/to/weights.pth`."""
    if spec == "lite0":
        return LiteImage()
    if spec.startswith("resnet18:"):
        return ResNet18Image(Path(spec[len("resnet18:"):]))
    raise RerankerError(f"unknown image features {spec!r}; use lite0 or resnet18:/path")


def photo_pixels(paths: Sequence[Path], size: int) -> np.ndarray:
    """Decode photos the way every tower here sees them: EXIF-rotated RGB squashed to size²."""
    return to_array([open_photo(path, ImagePrep(size, "squash")) for path in paths])


# ------------------------------------------------------------------------------ pair vectors


def seed_pair_features(text_rows: np.ndarray, image_rows: np.ndarray) -> np.ndarray:
    """The study's pair vector: text features then image features, row by row."""
    return np.concatenate([np.asarray(text_rows, np.float32),
                           np.asarray(image_rows, np.float32)], axis=1)


def dual_pair_features(text_rows: np.ndarray, image_rows: np.ndarray) -> np.ndarray:
    """Pair vector over dual-encoder embeddings: element-wise product, then the cosine.

    The product keeps which dimensions agree (a head can weigh them); its sum is the cosine
    the first stage ranked by, appended so a head can start from it.
    """
    product = np.asarray(text_rows, np.float32) * np.asarray(image_rows, np.float32)
    return np.concatenate([product, product.sum(axis=1, keepdims=True)], axis=1)


# ----------------------------------------------------------------------------------- scorers


class Scorer(Protocol):
    """Predicts a match score (higher = better) for each row of pair vectors."""

    def predict(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class LinearScorer:
    """`x @ coef + intercept` (standardisation folded into the coefficients)."""

    coef: np.ndarray
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32) @ self.coef.astype(np.float32) + np.float32(
            self.intercept)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"coef": torch.from_numpy(np.asarray(self.coef, np.float32)),
                "intercept": torch.tensor([self.intercept], dtype=torch.float32)}


class PairMLP(nn.Module):
    """Standardise, then Linear-ReLU-Dropout blocks and a sigmoid output in [0, 1].

    `layers` lists every width, input first and 1 last: (1664, 256, 64, 1) is the study's
    3-layer network. The standardisation statistics are buffers so the artifact carries them.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, layers: Sequence[int], dropout: float = 0.2) -> None:
        super().__init__()
        if len(layers) < 2 or layers[-1] != 1:
            raise ValueError(f"layers must run from the input width to 1, got {layers}")
        self.layers = tuple(int(n) for n in layers)
        self.register_buffer("mean", torch.zeros(self.layers[0]))
        self.register_buffer("std", torch.ones(self.layers[0]))
        blocks: list[nn.Module] = []
        for width_in, width_out in zip(self.layers[:-2], self.layers[1:-1], strict=True):
            blocks += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(dropout)]
        blocks.append(nn.Linear(self.layers[-2], 1))
        self.net = nn.Sequential(*blocks)

    def set_statistics(self, x: np.ndarray) -> None:
        self.mean.copy_(torch.from_numpy(x.mean(0).astype(np.float32)))
        self.std.copy_(torch.from_numpy(x.std(0).astype(np.float32)).clamp(min=1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.sigmoid(self.net((x - self.mean) / self.std)).squeeze(-1)
        return out

    def predict(self, x: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        self.eval()
        parts = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                chunk = torch.from_numpy(np.asarray(x[start:start + batch_size], np.float32))
                parts.append(self(chunk).numpy())
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


class LightGBMScorer:
    """A LightGBM booster kept as its text model (portable across platforms and versions)."""

    def __init__(self, model_text: str) -> None:
        import lightgbm

        self.model_text = model_text
        self.booster = lightgbm.Booster(model_str=model_text)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(x, np.float32)), dtype=np.float32)


# ---------------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class RerankConfig:
    """What a re-ranker needs besides its weights.

    `features` is `seed` (then `text` and `image` name the towers) or `dual` (then
    `dual_model` is the encoder name, `name@version`, whose embeddings it was trained on).
    """

    name: str
    version: str
    scorer: str
    features: str
    text: str | None = None
    image: str | None = None
    dual_model: str | None = None
    layers: tuple[int, ...] = ()
    depth: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "name": self.name, "version": self.version,
                "scorer": self.scorer, "features": self.features, "text": self.text,
                "image": self.image, "dual_model": self.dual_model,
                "layers": list(self.layers), "depth": self.depth, "extra": self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RerankConfig:
        if data.get("format") != FORMAT_VERSION:
            raise RerankerError(f"re-ranker format {data.get('format')!r} is not "
                                f"{FORMAT_VERSION}; retrain it with this version")
        return cls(name=str(data["name"]), version=str(data["version"]),
                   scorer=str(data["scorer"]), features=str(data["features"]),
                   text=data.get("text"), image=data.get("image"),
                   dual_model=data.get("dual_model"),
                   layers=tuple(int(n) for n in data.get("layers", ())),
                   depth=int(data.get("depth", 30)), extra=dict(data.get("extra", {})))


def save_reranker(out: Path, config: RerankConfig, scorer: Scorer,
                  metrics: Mapping[str, Any], card: str) -> Path:
    """Write the artifact into `out`, replacing it only once complete."""
    with staged_directory(out) as staging:
        if isinstance(scorer, LinearScorer):
            save_file(scorer.tensors(), str(staging / "weights.safetensors"))
        elif isinstance(scorer, PairMLP):
            state = {k: v.detach().contiguous() for k, v in scorer.state_dict().items()}
            save_file(state, str(staging / "weights.safetensors"))
        elif isinstance(scorer, LightGBMScorer):
            (staging / "model.txt").write_text(scorer.model_text, encoding="utf-8")
        else:
            raise TypeError(f"cannot save scorer of type {type(scorer).__name__}")
        (staging / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n",
                                             encoding="utf-8")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False)
                                              + "\n", encoding="utf-8")
        (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return out


def load_scorer(artifact: Path, config: RerankConfig) -> Scorer:
    """Rebuild the scorer an artifact describes."""
    if config.scorer == "lightgbm":
        return LightGBMScorer((artifact / "model.txt").read_text(encoding="utf-8"))
    weights = load_file(str(artifact / "weights.safetensors"))
    if config.scorer == "linear":
        return LinearScorer(weights["coef"].numpy(), float(weights["intercept"][0]))
    if config.scorer == "mlp":
        mlp = PairMLP(config.layers)
        mlp.load_state_dict(weights)
        return mlp.eval()
    raise RerankerError(f"unknown scorer kind {config.scorer!r} in {artifact}")


# ---------------------------------------------------------------------------------- reranker


class Reranker:
    """Loads an artifact and re-orders the first stage's candidates from a `PhotoIndex`."""

    def __init__(self, artifact: Path, depth: int | None = None) -> None:
        config_file = artifact / "config.json"
        if not config_file.is_file():
            raise RerankerError(f"re-ranker artifact incomplete: {config_file} does not exist")
        try:
            self.config = RerankConfig.from_dict(json.loads(config_file.read_text("utf-8")))
            self.scorer = load_scorer(artifact, self.config)
        except (OSError, KeyError, RuntimeError) as error:
            raise RerankerError(f"cannot load re-ranker {artifact}: {error}") from error
        if self.config.features not in ("seed", "dual"):
            raise RerankerError(f"unknown feature kind {self.config.features!r} in {artifact}")
        self.artifact = artifact
        self.depth = int(depth if depth is not None else self.config.depth)
        self._photo_cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.config.name}@{self.config.version}"

    def check_encoder(self, encoder_name: str) -> None:
        """A `dual` re-ranker reads the index's embeddings: they must come from its model."""
        if self.config.features == "dual" and self.config.dual_model != encoder_name:
            raise RerankerError(
                f"re-ranker {self.name} was trained on embeddings of {self.config.dual_model!r}"
                f" but the index uses {encoder_name!r}; retrain it (python -m training "
                "seed-study --dual-model ...) or search without --rerank")

    @cached_property
    def text_tower(self) -> TextFeatures:
        return make_text_features(self.config.text or "minilm")

    @cached_property
    def image_tower(self) -> ImageFeatures:
        return make_image_features(self.config.image or "lite0")

    def photo_features(self, paths: Sequence[Path]) -> np.ndarray:
        """Image-tower features of photo files, from the in-memory cache when unchanged."""
        keys: list[tuple[str, int, int]] = []
        for path in paths:
            stat = path.stat()
            keys.append((str(path), stat.st_size, stat.st_mtime_ns))
        with self._lock:
            missing = [i for i, key in enumerate(keys) if key not in self._photo_cache]
        if missing:
            tower = self.image_tower
            fresh = tower.features(photo_pixels([paths[i] for i in missing], tower.input_size))
            with self._lock:
                for i, row in zip(missing, fresh, strict=True):
                    self._photo_cache[keys[i]] = row
                while len(self._photo_cache) > PHOTO_CACHE_SIZE:
                    self._photo_cache.popitem(last=False)
        with self._lock:
            rows = [self._photo_cache[key] for key in keys]
            for key in keys:
                self._photo_cache.move_to_end(key)
        return np.stack(rows)

    def pair_features(self, query: str, query_vector: np.ndarray, paths: Sequence[Path],
                      photo_vectors: np.ndarray) -> np.ndarray:
        """The pair vectors the scorer was trained on, for one query and its candidates."""
        if self.config.features == "dual":
            text = np.repeat(np.asarray(query_vector, np.float32)[None, :], len(paths), axis=0)
            return dual_pair_features(text, np.asarray(photo_vectors, np.float32))
        text_row = self.text_tower.encode([query])
        text = np.repeat(text_row, len(paths), axis=0)
        return seed_pair_features(text, self.photo_features(paths))

    def rerank(self, query: str, query_vector: np.ndarray, candidates: Sequence[C],
               index: PhotoIndex) -> list[tuple[C, float]]:
        """The candidates with the first `depth` re-ordered by the scorer, each with its score.

        Returns exactly the candidates it was given (never another photo): the re-ordered
        head scored by the re-ranker, then the tail in first-stage order with its first-stage
        scores. When a candidate photo cannot be read the first stage's order is kept.
        """
        head, tail = list(candidates[:self.depth]), list(candidates[self.depth:])
        unchanged = [(c, float(c.score)) for c in candidates]
        if len(head) < 2:
            return unchanged
        rows = [int(c.row) for c in head]
        paths = [index.photo_dir / index.paths[row] for row in rows]
        vectors = np.asarray(index.embeddings[rows], dtype=np.float32)
        try:
            features = self.pair_features(query, query_vector, paths, vectors)
        except (OSError, UnreadablePhotoError) as error:
            # A photo deleted or broken since indexing: keep the first stage's order.
            log.warning("re-ranking skipped, a candidate photo is unreadable: %s", error)
            return unchanged
        scores = np.asarray(self.scorer.predict(features), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        return ([(head[i], float(scores[i])) for i in order]
                + [(c, float(c.score)) for c in tail])


def load_reranker(path: Path, depth: int | None = None) -> Reranker:
    """The re-ranker stored at `path`; raises `RerankerError` with what to fix."""
    if not path.is_dir():
        raise RerankerError(f"re-ranker directory not found: {path}")
    return Reranker(path, depth)
