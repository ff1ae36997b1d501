"""Feature extractors of the study (local BERT, local ResNet-18) and the on-disk cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.rerank import RerankerError, make_image_features, make_text_features
from training.seed_study.features import cached_matrix, image_features, text_features


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with a 20-word vocabulary, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "red", "ball", "on",
             "the", "grass", "man", "runs", "blue", "sky", "two", "cats", "sit", "."]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(str(folder))
    return folder


def _photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = np.full((60 + 10 * i, 80, 3), 40 * i, dtype=np.uint8)
        path = folder / f"p{i}.jpg"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_a_local_bert_directory_gives_normalised_mean_pooled_rows(tiny_bert: Path,
                                                                  tmp_path: Path) -> None:
    tower = make_text_features(f"hf:{tiny_bert}")
    rows = text_features(tmp_path / "cache", tower, ["a dog runs", "two cats sit .", "a"])
    assert rows.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-3)
    assert len(list((tmp_path / "cache").glob("seed-text-*.npz"))) == 1
    with pytest.raises(RerankerError, match="not found"):
        make_text_features(f"hf:{tmp_path / 'nowhere'}")


def test_resnet18_from_a_local_weights_file(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    tower = make_image_features(f"resnet18:{weights}")
    features = image_features(tmp_path / "cache", tower, _photos(tmp_path / "photos", 3))
    assert features.shape == (3, 512)
    assert np.isfinite(features).all()
    with pytest.raises(RerankerError, match="not found"):
        make_image_features(f"resnet18:{tmp_path / 'missing.pth'}")


def test_the_cache_is_keyed_by_the_inputs(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute(value: float) -> np.ndarray:
        calls.append(1)
        return np.full((2, 3), value, dtype=np.float32)

    first = cached_matrix(tmp_path, "text", "tower", ["x", "y"], lambda: compute(1.0))
    again = cached_matrix(tmp_path, "text", "tower", ["x", "y"], lambda: compute(2.0))
    other = cached_matrix(tmp_path, "text", "tower", ["y", "x"], lambda: compute(3.0))
    assert len(calls) == 2  # the second call read the file
    np.testing.assert_array_equal(first, again)
    assert other[0, 0] == 3.0


def test_one_tower_pass_serves_the_seed_features_and_the_dual_embeddings(tmp_path: Path
                                                                          ) -> None:
    """Our dual encoder reads Lite0's final_mean of squashed photos: the study runs the tower
    once for both views, and the result equals what the engine itself computes."""
    from engine.encoders import load_encoder
    from engine.encoders.base import encode_images
    from engine.rerank import LiteImage, photo_pixels
    from training.artifacts import save_artifact
    from training.dual_encoder import TrainConfig, build_heads
    from training.seed_study.features import photo_views, shared_image_head

    torch.manual_seed(0)
    config = TrainConfig(image_towers=("lite0",), image_blocks=("final_mean",),
                         text_towers=("minilm",), embed_dim=16)
    artifact = save_artifact(build_heads(config, 1280, 384, "tiny-dual", "0.0.1"),
                             tmp_path / "tiny-dual", {"name": "tiny-dual"}, "# tiny\n")
    encoder = load_encoder(f"dual:{artifact}")

    class CountingLite(LiteImage):
        batches = 0

        def features(self, pixels: np.ndarray) -> np.ndarray:
            CountingLite.batches += 1
            return super().features(pixels)

    tower = CountingLite()
    assert shared_image_head(encoder, tower) is not None
    paths = _photos(tmp_path / "photos", 3)
    seed, dual = photo_views(tmp_path / "cache", tower, encoder, paths)
    assert CountingLite.batches == 1  # one batch of three photos, one pass for both views
    np.testing.assert_allclose(dual, encode_images(encoder, paths), atol=1e-4)
    np.testing.assert_allclose(seed, LiteImage().features(photo_pixels(paths, 224)), atol=1e-4)
    again_seed, again_dual = photo_views(tmp_path / "cache", tower, encoder, paths)
    assert CountingLite.batches == 1  # both read back from the cache
    np.testing.assert_allclose(again_dual, dual, atol=2e-3)
    np.testing.assert_allclose(again_seed, seed, rtol=2e-3, atol=2e-3)
