"""Engine fixtures: a tiny randomly initialised open_clip model and small photo folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.encoders import load_encoder
from engine.encoders.base import Encoder

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model config JSON for an open_clip ViT small enough to build in milliseconds."""
    path = tmp_path_factory.mktemp("clip") / "TinyTestViT.json"
    path.write_text(json.dumps(TINY_CLIP), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tiny_clip_config: Path) -> Encoder:
    import torch

    torch.manual_seed(0)
    return load_encoder(f"open_clip:{tiny_clip_config}:random")


def make_photo(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (64, 48),
               stripe: int = 0) -> Path:
    """Write a small photo of one colour (with an optional stripe to tell photos apart)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = color
    if stripe:
        pixels[:, :stripe] = (255 - color[0], 255 - color[1], 255 - color[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture()
def photo_dir(tmp_path: Path) -> Path:
    """Six photos in two folders, JPEG, PNG and WebP."""
    root = tmp_path / "photos"
    make_photo(root / "red.jpg", (220, 30, 30))
    make_photo(root / "green.png", (30, 200, 40))
    make_photo(root / "blue.webp", (20, 40, 210))
    make_photo(root / "trips" / "yellow.jpg", (230, 220, 20), stripe=5)
    make_photo(root / "trips" / "grey.JPG", (128, 128, 128), stripe=9)
    make_photo(root / "trips" / "white.jpeg", (250, 250, 250), stripe=13)
    (root / "notes.txt").write_text("not a photo", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_clip_spec(tiny_clip_config: Path, tiny_encoder: Encoder) -> str:
    """A model spec for `tiny_encoder`'s weights saved to a checkpoint: unlike `:random`, every
    process that loads it (CLI subprocesses, Ray actors) gets the same vectors."""
    import torch

    checkpoint = tiny_clip_config.parent / "tiny.pt"
    torch.save(tiny_encoder.model.state_dict(), checkpoint)  # type: ignore[attr-defined]
    return f"open_clip:{tiny_clip_config}:{checkpoint}"
