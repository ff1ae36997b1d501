"""The open_clip encoder, exercised with a tiny random architecture (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.encoders import ModelSpecError, load_encoder
from engine.encoders.base import Encoder, encode_images
from engine.encoders.openclip import OpenClipEncoder

from .conftest import make_photo


def test_tiny_model_follows_the_protocol(tiny_encoder: Encoder, tmp_path: Path) -> None:
    assert isinstance(tiny_encoder, Encoder)
    texts = tiny_encoder.encode_texts(["a red car", "две собаки на пляже"])
    photos = encode_images(tiny_encoder, [make_photo(tmp_path / "a.jpg", (10, 200, 10))])
    assert texts.shape == (2, tiny_encoder.dim) and photos.shape == (1, tiny_encoder.dim)
    assert texts.dtype == np.float32 and photos.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(photos, axis=1), 1.0, rtol=1e-5)
    assert tiny_encoder.image_prep.mode == "center_crop" and tiny_encoder.image_prep.size == 32
    assert tiny_encoder.encode_texts([]).shape == (0, tiny_encoder.dim)


def test_local_checkpoint_round_trip(tiny_clip_config: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = load_encoder(f"open_clip:{tiny_clip_config}:random")
    assert isinstance(source, OpenClipEncoder)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": source.model.state_dict()}, checkpoint)
    torch.manual_seed(2)  # a different random init, overwritten by the checkpoint
    loaded = load_encoder(f"open_clip:{tiny_clip_config}:{checkpoint}")
    texts = ["a dog on a beach", "a city at night"]
    np.testing.assert_allclose(loaded.encode_texts(texts), source.encode_texts(texts), atol=1e-5)
    assert "tiny.pt" in loaded.name and loaded.name != source.name
    other = load_encoder(f"open_clip:{tiny_clip_config}:random")
    assert not np.allclose(other.encode_texts(texts), source.encode_texts(texts), atol=1e-3)


def test_missing_checkpoint_names_the_path(tiny_clip_config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ViT-B-32.pt"
    with pytest.raises(ModelSpecError, match=str(missing)):
        load_encoder(f"open_clip:{tiny_clip_config}:{missing}")


@pytest.mark.parametrize("spec, message", [
    ("open_clip:ViT-B-32", "needs weights"),
    ("open_clip:", "architecture"),
    ("open_clip:/no/such/config.json:random", "config not found"),
    ("open_clip:local-dir:/no/such/dir", "directory not found"),
    ("clip-please", "unknown model spec"),
    ("dual:/no/such/artifact", "artifact directory not found"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        load_encoder(spec)
