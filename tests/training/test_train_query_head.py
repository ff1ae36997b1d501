"""`training.main(["train-query-head", ...])` end to end on a tiny synthetic dataset.

A query head must land in its base's space: the base's photo embeddings (and so every index)
are untouched, its texts rank the right photos, and it refuses to load beside another base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from engine.encoders import FULL_TEXT_HEAD, ModelSpecError, load_encoder
from engine.encoders.base import encode_images, text_model_name
from engine.encoders.dual import DualEncoder
from training.cli import main
from training.query_head import RUSSIAN_BLENDS


def _train_base(data: Path, out: Path, cache: Path, version: str) -> Path:
    code = main(["train-dual-encoder", "--data", str(data), "--out", str(out),
                 "--cache", str(cache), "--translations", str(data / "ru"),
                 "--name", "smoke", "--version", version,
                 "--image-towers", "lite0", "--image-blocks", "final_mean,mid_mean",
                 "--epochs", "30", "--batch-size", "16", "--patience", "30", "--lr", "0.003",
                 "--image-dropout", "0.1", "--flip", "false"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def trained(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Path]:
    """A small base model and a MiniLM query head trained against it."""
    root = tmp_path_factory.mktemp("query-head")
    base = _train_base(synthetic_data, root / "base", root / "cache", "0.0.1")
    query = root / "query"
    code = main(["train-query-head", "--data", str(synthetic_data), "--base", str(base),
                 "--out", str(query), "--cache", str(root / "cache"), "--translations",
                 str(synthetic_data / "ru"), "--name", "smoke-query", "--version", "0.0.2"])
    assert code == 0
    return base, query


def test_artifact_holds_only_the_text_side_and_names_its_base(trained: tuple[Path, Path]
                                                              ) -> None:
    _, query = trained
    config = json.loads((query / "config.json").read_text())
    assert config["extra"]["image_space"] == "smoke@0.0.1"
    assert config["text_towers"] == ["minilm"]
    weights = load_file(str(query / "heads.safetensors"))
    assert weights and not any(key.startswith("image.") for key in weights)
    metrics = json.loads((query / "metrics.json").read_text())
    # 18 colour/shape pairs: the head must rank far above chance in the base's space.
    assert metrics["flickr8k_test"]["MRR"] > 1.5 * metrics["random"]["flickr8k_test"]["MRR"]
    assert set(metrics["russian"]) == {"seed_test", "flickr8k_test_caption0"}
    assert "R@5" in metrics["base_text_head"]["flickr8k_test"]
    card = (query / "MODEL_CARD.md").read_text()
    assert "smoke-query@0.0.2" in card and "train-query-head" in card
    assert "smoke@0.0.1" in card


def test_photos_embed_as_the_base_and_texts_through_the_query_head(
        trained: tuple[Path, Path], synthetic_data: Path) -> None:
    base, query = trained
    full = load_encoder(f"dual:{base}", FULL_TEXT_HEAD)
    fast = load_encoder(f"dual:{base}", str(query))
    assert fast.name == full.name == "smoke@0.0.1"  # indexes built by either serve both
    assert text_model_name(fast) == "smoke@0.0.1+smoke-query@0.0.2"
    assert text_model_name(full) == "smoke@0.0.1"
    photos = sorted((synthetic_data / "flickr8k" / "images_224").glob("*.jpg"))
    np.testing.assert_array_equal(encode_images(fast, photos), encode_images(full, photos))

    assert isinstance(fast, DualEncoder)
    assert fast.text_config.text_towers == ("minilm",)
    texts = fast.encode_texts(["a red square", "красный квадрат"])
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(texts, full.encode_texts(["a red square", "красный квадрат"]))


def test_query_head_refuses_another_base(trained: tuple[Path, Path], synthetic_data: Path,
                                         tmp_path: Path) -> None:
    base, query = trained
    other = _train_base(synthetic_data, tmp_path / "other", tmp_path / "cache", "0.0.9")
    with pytest.raises(ModelSpecError, match=r"trained for 'smoke@0.0.1', not 'smoke@0.0.9'"):
        load_encoder(f"dual:{other}", str(query))
    with pytest.raises(ModelSpecError, match="holds only a query head"):
        load_encoder(f"dual:{query}")
    with pytest.raises(ModelSpecError, match="query-head artifact directory not found"):
        load_encoder(f"dual:{base}", str(tmp_path / "missing"))
    # The packaged query head was trained for the packaged base, not for this one: `default`
    # falls back to the base's own text head instead of failing.
    assert text_model_name(load_encoder(f"dual:{base}")) == "smoke@0.0.1"


def _with_blend(query: Path, blend: float, out: Path) -> Path:
    shutil.copytree(query, out)
    config = json.loads((out / "config.json").read_text())
    config["extra"]["russian_blend"] = blend
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_russian_queries_blend_in_the_base_head_by_the_stored_weight(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    """With `russian_e5`, English reads the query head alone; Russian mixes in the base's own
    head (its e5 reads the Russian itself) with the weight the artifact stores, chosen on DEV.
    Without it (the default) Russian reads the query head alone, through the gloss."""
    base, query = trained
    metrics = json.loads((query / "metrics.json").read_text())
    assert metrics["russian_blend"] in RUSSIAN_BLENDS
    assert set(metrics["dev_russian_by_blend"]) == {str(w) for w in RUSSIAN_BLENDS}
    assert "blended with the base's head" in (query / "MODEL_CARD.md").read_text()

    texts = ["a red square", "красный квадрат", "синяя точка"]
    alone = load_encoder(f"dual:{base}", str(_with_blend(query, 1.0, tmp_path / "alone")),
                         russian_e5=True)
    stored = _with_blend(query, 0.25, tmp_path / "mixed")
    mixed = load_encoder(f"dual:{base}", str(stored), russian_e5=True)
    gloss_only = load_encoder(f"dual:{base}", str(stored))
    np.testing.assert_allclose(gloss_only.encode_texts(texts), alone.encode_texts(texts),
                               atol=1e-6)
    assert text_model_name(mixed).endswith("+e5-ru")
    assert not text_model_name(gloss_only).endswith("+e5-ru")
    full = load_encoder(f"dual:{base}", FULL_TEXT_HEAD).encode_texts(texts)
    by_alone, by_mixed = alone.encode_texts(texts), mixed.encode_texts(texts)
    np.testing.assert_allclose(by_mixed[0], by_alone[0], atol=1e-6)
    expected = 0.25 * by_alone[1:] + 0.75 * full[1:]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(by_mixed[1:], expected, atol=1e-5)
