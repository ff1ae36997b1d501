"""The photo-side child filter: which photos may never be shown, whatever the query.

Refusing queries that ask for children is not enough: "a family at the beach" finds photos of
children too, and the law forbids showing them without consent. So every photo gets a score
("how likely does this photo show a child") from its embedding, and a photo whose score reaches
the threshold is flagged and never returned (`engine.search`).

Two kinds of scorer:

- a **trained detector** (`engine/models/child-detector`, written by `python -m training
  train-child-detector`): logistic regression, a small MLP, nearest neighbours among labelled
  photos, or a mean of scorers, over the embeddings of one encoder, trained on Flickr8k
  photos labelled by their own captions (the legal lexicon). A detector is tied to the
  encoder name it was trained on: another model's embeddings live in another space, so
  loading it for another encoder is refused.
- a **zero-shot** scorer: the photo embedding against text prompts ("a photo of a child" vs
  "a photo of a man", "… of a dog", …) encoded by the same encoder, softmax over the prompt
  classes, the child class's probability is the score. It needs no training, so it keeps any
  other encoder (an open_clip model, a retrained dual encoder) safe when no trained detector
  exists for it; its default threshold is not calibrated for that encoder (say so in logs).

Everything here is pure numpy over embeddings: scoring the whole index again (`reflag`) never
re-embeds a photo.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from engine.encoders.base import Encoder
from engine.fileops import staged_directory

log = logging.getLogger(__name__)

PACKAGED_DETECTOR = Path(__file__).resolve().parent / "models" / "child-detector"
DETECTOR_FILE = "detector.json"
WEIGHTS_FILE = "weights.npz"
FORMAT_VERSION = 1

FilterMode = Literal["auto", "trained", "zero-shot", "off"]
FILTER_MODES: tuple[FilterMode, ...] = ("auto", "trained", "zero-shot", "off")

# Prompt classes of the zero-shot scorer; the first class is the child class. Several classes
# (not child vs adult only) so that a photo of a dog or a street is explained by its own class
# instead of being forced to pick between child and adult.
ZERO_SHOT_PROMPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("child", ("a photo of a child", "a photo of a little girl", "a photo of a little boy",
               "a photo of children playing", "a photo of a baby", "a photo of a young boy",
               "a photo of a young girl", "a photo of kids")),
    ("man", ("a photo of a man", "a photo of an adult man")),
    ("woman", ("a photo of a woman", "a photo of an adult woman")),
    ("adults", ("a photo of adults", "a photo of a group of adults")),
    ("animal", ("a photo of a dog", "a photo of an animal")),
    ("landscape", ("a photo of a landscape", "a photo of mountains", "a photo of the sea")),
    ("city", ("a photo of a city street", "a photo of a building")),
    ("sport", ("a photo of a cyclist", "a photo of a surfer", "a photo of a climber")),
)
# CLIP's logit scale; the prompts' softmax is computed at this temperature.
ZERO_SHOT_SCALE = 100.0
# Threshold of the zero-shot fallback for encoders nobody calibrated it on: the child class
# holding a fifth of the probability mass over 8 classes (uniform would be 1/8) flags a photo.
ZERO_SHOT_DEFAULT_THRESHOLD = 0.2
_CHUNK = 65_536  # rows scored at once, so scoring a million-photo index needs little memory


class ChildFilterError(ValueError):
    """A detector that cannot be used (missing, incomplete, for another encoder): the message
    says what to do."""


# ------------------------------------------------------------------------------- scorers


class Scorer(Protocol):
    """Maps (N, dim) L2-normalised embeddings to N scores in [0, 1] (higher: more child)."""

    @property
    def kind(self) -> str: ...

    def __call__(self, embeddings: np.ndarray) -> np.ndarray: ...

    def arrays(self) -> dict[str, np.ndarray]: ...


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return out


@dataclass(frozen=True)
class LogisticScorer:
    """sigmoid(((x - shift) / scale) · weight + bias): logistic regression on embeddings."""

    weight: np.ndarray
    bias: float
    shift: np.ndarray
    scale: np.ndarray
    kind: str = "logistic"

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        z = ((embeddings - self.shift) / self.scale) @ self.weight + self.bias
        return _sigmoid(z)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": np.array(self.bias), "shift": self.shift,
                "scale": self.scale}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> LogisticScorer:
        return cls(weight=a["weight"], bias=float(a["bias"]), shift=a["shift"], scale=a["scale"])


@dataclass(frozen=True)
class MLPScorer:
    """One hidden ReLU layer then a logistic output, on standardised embeddings."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: float
    shift: np.ndarray
    scale: np.ndarray
    kind: str = "mlp"

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        hidden = np.maximum(((embeddings - self.shift) / self.scale) @ self.w1 + self.b1, 0.0)
        return _sigmoid(hidden @ self.w2 + self.b2)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": np.array(self.b2),
                "shift": self.shift, "scale": self.scale}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> MLPScorer:
        return cls(w1=a["w1"], b1=a["b1"], w2=a["w2"], b2=float(a["b2"]), shift=a["shift"],
                   scale=a["scale"])


@dataclass(frozen=True)
class ZeroShotScorer:
    """Softmax over prompt classes of `scale` × cosine(photo, class vector); class 0 = child.

    A class vector is the normalised mean of its prompts' text embeddings (prompt ensembling).
    """

    classes: np.ndarray
    scale: float = ZERO_SHOT_SCALE
    kind: str = "zero-shot"

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        logits = self.scale * (embeddings @ self.classes.T)
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        out: np.ndarray = weights[:, 0] / weights.sum(axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"classes": self.classes, "scale": np.array(self.scale)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> ZeroShotScorer:
        return cls(classes=a["classes"], scale=float(a["scale"]))

    @classmethod
    def from_encoder(cls, encode_texts: Callable[[Sequence[str]], np.ndarray],
                     prompts: Sequence[tuple[str, Sequence[str]]] = ZERO_SHOT_PROMPTS,
                     scale: float = ZERO_SHOT_SCALE) -> ZeroShotScorer:
        vectors = []
        for _, texts in prompts:
            mean = np.asarray(encode_texts(list(texts)), dtype=np.float32).mean(axis=0)
            vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        return cls(classes=np.stack(vectors).astype(np.float32), scale=scale)


@dataclass(frozen=True)
class KNNScorer:
    """Share of the `k` most similar labelled photos (by cosine) that show a child.

    A memory of the training photos' embeddings rather than a boundary: on Flickr8k it keeps
    recall near 1 while hiding far fewer photos than logistic regression or the MLP (a photo
    among children-like photos is hidden even when no global direction says "child"). Costs
    one (N, M) product: ~1 ms per photo against 6000 references.
    """

    reference: np.ndarray
    labels: np.ndarray
    k: int
    kind: str = "knn"

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        reference = np.asarray(self.reference, dtype=np.float32)
        k = min(self.k, len(reference))
        out = np.empty(len(embeddings), dtype=np.float32)
        for start in range(0, len(embeddings), 1024):
            sims = np.asarray(embeddings[start:start + 1024], dtype=np.float32) @ reference.T
            nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out[start:start + len(sims)] = self.labels[nearest].mean(axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference, "labels": self.labels, "k": np.array(self.k)}

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> KNNScorer:
        return cls(reference=np.asarray(a["reference"], dtype=np.float32),
                   labels=np.asarray(a["labels"], dtype=np.float32), k=int(a["k"]))


@dataclass(frozen=True)
class MeanScorer:
    """The mean of several scorers' scores ("both": a classifier and the zero-shot score)."""

    members: tuple[Scorer, ...]
    kind: str = "mean"

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.mean([member(embeddings) for member in self.members], axis=0)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for number, member in enumerate(self.members):
            arrays.update({f"m{number}.{key}": value for key, value in member.arrays().items()})
        return arrays


def scorer_from_arrays(kind: str, arrays: Mapping[str, np.ndarray],
                       members: Sequence[str] = ()) -> Scorer:
    """Rebuild a scorer saved by `Scorer.arrays()`; `members` lists a mean's member kinds."""
    if kind == "logistic":
        return LogisticScorer.from_arrays(arrays)
    if kind == "mlp":
        return MLPScorer.from_arrays(arrays)
    if kind == "zero-shot":
        return ZeroShotScorer.from_arrays(arrays)
    if kind == "knn":
        return KNNScorer.from_arrays(arrays)
    if kind == "mean":
        parts: list[Scorer] = []
        for number, member_kind in enumerate(members):
            prefix = f"m{number}."
            sub = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            parts.append(scorer_from_arrays(member_kind, sub))
        return MeanScorer(tuple(parts))
    raise ChildFilterError(f"unknown detector kind {kind!r}")


def score_in_chunks(scorer: Callable[[np.ndarray], np.ndarray], embeddings: np.ndarray
                    ) -> np.ndarray:
    """Scores of every row, `_CHUNK` rows at a time (a memory-mapped index is read once)."""
    out = np.empty(len(embeddings), dtype=np.float32)
    for start in range(0, len(embeddings), _CHUNK):
        block = np.asarray(embeddings[start:start + _CHUNK], dtype=np.float32)
        out[start:start + len(block)] = scorer(block)
    return out


# ----------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class ChildDetector:
    """A scorer tied to the encoder whose embeddings it reads, with its chosen threshold.

    `info` carries what the model card reports (training data, metrics, the legal lexicon's
    fingerprint used for the labels); only `name`, `version`, `encoder`, `kind` and
    `threshold` matter at search time.
    """

    name: str
    version: str
    encoder: str
    scorer: Scorer
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """What produced a score: stored scores are reused only under the same identity."""
        return f"{self.name}@{self.version}"

    @property
    def kind(self) -> str:
        return self.scorer.kind

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        return score_in_chunks(self.scorer, embeddings)

    # -- persistence ----------------------------------------------------------------------
    @classmethod
    def load(cls, directory: Path) -> ChildDetector:
        """Read `detector.json` + `weights.npz`; `ChildFilterError` when incomplete."""
        meta_file, weights_file = directory / DETECTOR_FILE, directory / WEIGHTS_FILE
        for required in (meta_file, weights_file):
            if not required.is_file():
                raise ChildFilterError(f"child detector incomplete: {required} does not exist "
                                       "(train one with `python -m training "
                                       "train-child-detector`)")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            raise ChildFilterError(f"child detector {directory} has unknown format "
                                   f"{meta.get('format')!r}")
        with np.load(weights_file, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
        scorer = scorer_from_arrays(str(meta["kind"]), arrays, meta.get("members", ()))
        return cls(name=str(meta["name"]), version=str(meta["version"]),
                   encoder=str(meta["encoder"]), scorer=scorer,
                   threshold=float(meta["threshold"]), info=dict(meta.get("info", {})))

    def save(self, directory: Path, *, card: str, metrics: Mapping[str, Any]) -> Path:
        """Write the artifact next to its final place, then swap it in whole."""
        with staged_directory(directory) as staging:
            self._write(staging, card, metrics)
        return directory

    def _write(self, staging: Path, card: str, metrics: Mapping[str, Any]) -> None:
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION, "name": self.name, "version": self.version,
            "encoder": self.encoder, "kind": self.kind, "threshold": self.threshold,
            "info": self.info,
        }
        if isinstance(self.scorer, MeanScorer):
            meta["members"] = [member.kind for member in self.scorer.members]
        (staging / DETECTOR_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False)
                                             + "\n", encoding="utf-8")
        # float16 for the big reference matrices (half the size, scores agree to ~1e-3).
        arrays = {k: np.asarray(v, dtype=np.float16 if np.asarray(v).size > 100_000
                                else np.float32)
                  for k, v in self.scorer.arrays().items()}
        with open(staging / WEIGHTS_FILE, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False)
                                              + "\n", encoding="utf-8")
        (staging / "MODEL_CARD.md").write_text(card, encoding="utf-8")


def zero_shot_detector(encoder: Encoder, threshold: float = ZERO_SHOT_DEFAULT_THRESHOLD
                       ) -> ChildDetector:
    """The prompt scorer for `encoder`; its identity hashes the encoder, prompts and scale."""
    scorer = ZeroShotScorer.from_encoder(encoder.encode_texts)
    digest = hashlib.sha256(json.dumps([encoder.name, ZERO_SHOT_PROMPTS, scorer.scale])
                            .encode("utf-8")).hexdigest()[:10]
    return ChildDetector(name="zero-shot", version=digest, encoder=encoder.name, scorer=scorer,
                         threshold=threshold,
                         info={"calibrated": False, "prompts": [c for c, _ in ZERO_SHOT_PROMPTS]})


# ------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class ChildFilter:
    """What the engine applies: a detector and the threshold at which a photo is flagged.

    `detector=None` is the filter switched off (only for collections known to hold no people
    and for measuring the unfiltered engine); its version string says so in every search log.
    A photo is flagged when its score is at or above `threshold`.
    """

    detector: ChildDetector | None
    threshold: float

    @classmethod
    def off(cls) -> ChildFilter:
        return cls(detector=None, threshold=1.0)

    @classmethod
    def of(cls, detector: ChildDetector, threshold: float | None = None) -> ChildFilter:
        """`detector` at its own threshold, or at `threshold` (a setting) when given."""
        return cls(detector=detector,
                   threshold=detector.threshold if threshold is None else float(threshold))

    @property
    def enabled(self) -> bool:
        return self.detector is not None

    @property
    def detector_id(self) -> str:
        return self.detector.identity if self.detector is not None else "off"

    @property
    def version(self) -> str:
        """`detector@version>=threshold`, or `off`: logged with every search."""
        if self.detector is None:
            return "off"
        return f"{self.detector.identity}>={self.threshold:.4f}"

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-row child scores (zeros when the filter is off)."""
        if self.detector is None:
            return np.zeros(len(embeddings), dtype=np.float32)
        return self.detector.scores(embeddings)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """True where a score reaches the threshold (never when the filter is off)."""
        if self.detector is None:
            return np.zeros(len(scores), dtype=bool)
        flags: np.ndarray = np.asarray(scores) >= self.threshold
        return flags


def build_child_filter(encoder_name: str, *, mode: FilterMode = "auto",
                       detector_dir: Path | None = None, threshold: float | None = None,
                       zero_shot_threshold: float | None = None,
                       encoder: Callable[[], Encoder] | None = None) -> ChildFilter:
    """The filter for an encoder, by `mode`:

    - `auto`: the trained detector (`detector_dir`, default the packaged one) when it was
      trained for `encoder_name`, else the zero-shot scorer (logged as a warning);
    - `trained`: the trained detector, or `ChildFilterError` when there is none for this
      encoder (for deployments that must not run on an uncalibrated fallback);
    - `zero-shot`: always the prompt scorer;
    - `off`: no photo-side filter (moderation blocks still apply).

    `threshold` replaces the trained detector's threshold, `zero_shot_threshold` the zero-shot
    default. `encoder` is called only when the zero-shot scorer is needed (re-flagging an index
    with a trained detector never loads the model).
    """
    if mode not in FILTER_MODES:
        raise ChildFilterError(f"unknown child filter mode {mode!r}; use one of {FILTER_MODES}")
    if mode == "off":
        log.warning("photo-side child filter is OFF: photos of children may be shown")
        return ChildFilter.off()
    if mode in ("auto", "trained"):
        explicit = detector_dir is not None
        directory = detector_dir or PACKAGED_DETECTOR
        detector: ChildDetector | None = None
        try:
            detector = ChildDetector.load(directory)
        except ChildFilterError:
            if explicit or mode == "trained":
                raise
            log.warning("no packaged child detector at %s", directory)
        if detector is not None and detector.encoder != encoder_name:
            message = (f"child detector {detector.identity} at {directory} was trained for "
                       f"encoder {detector.encoder!r}, not {encoder_name!r}")
            if explicit or mode == "trained":
                raise ChildFilterError(message + "; train one for this encoder with "
                                       "`python -m training train-child-detector`")
            log.warning("%s: using the zero-shot child filter instead", message)
            detector = None
        if detector is not None:
            return ChildFilter.of(detector, threshold)
    if encoder is None:
        raise ChildFilterError(f"no trained child detector for {encoder_name!r} and no encoder "
                               "to build the zero-shot filter with")
    zero_shot = zero_shot_detector(encoder(), zero_shot_threshold
                                   if zero_shot_threshold is not None
                                   else ZERO_SHOT_DEFAULT_THRESHOLD)
    log.warning("child filter for %s: zero-shot prompts at threshold %.3f (not calibrated for "
                "this encoder; train a detector for it to calibrate)", encoder_name,
                zero_shot.threshold)
    return ChildFilter.of(zero_shot)
