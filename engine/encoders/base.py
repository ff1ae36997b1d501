"""The one protocol every encoder follows, so index, search, bot and training never care which.

An encoder maps texts and photos into one space where the dot product of two L2-normalised
float32 rows says how well they match. Photo decoding is split from the network:
`image_prep` says how a photo must be decoded (size, squash or centre crop), so decoding can
run in worker processes and the network sees ready uint8 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from engine.images import ImagePrep, open_photo, to_array


@runtime_checkable
class Encoder(Protocol):
    """Text and photo encoder into a shared embedding space."""

    @property
    def name(self) -> str:
        """Identity of the model *and* its version; an index built by one name refuses another."""
        ...

    @property
    def dim(self) -> int:
        """Width of the embedding rows."""
        ...

    @property
    def image_prep(self) -> ImagePrep:
        """How photos must be decoded before `encode_pixels`."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, rows L2-normalised."""
        ...

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, dim) float32 for a uint8 batch (N, S, S, 3) decoded per `image_prep`."""
        ...


def text_model_name(encoder: Encoder) -> str:
    """What embeds an encoder's texts, for logs: its `text_model` when it has one (a dual
    encoder with a query head names both), else its name."""
    text_model = getattr(encoder, "text_model", None)
    return text_model if isinstance(text_model, str) else encoder.name


def encode_images(encoder: Encoder, photos: Sequence[Path | bytes], batch_size: int = 32
                  ) -> np.ndarray:
    """Decode and embed photos in batches; raises `UnreadablePhotoError` on a bad one."""
    rows: list[np.ndarray] = []
    for start in range(0, len(photos), batch_size):
        images = [open_photo(p, encoder.image_prep) for p in photos[start:start + batch_size]]
        rows.append(encoder.encode_pixels(to_array(images)))
    if not rows:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.concatenate(rows)
