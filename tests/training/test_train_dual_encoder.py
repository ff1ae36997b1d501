"""`training.main(["train-dual-encoder", ...])` end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.encoders import load_encoder
from training.cli import main


def test_training_writes_an_artifact_the_engine_loads(synthetic_data: Path, tmp_path: Path
                                                       ) -> None:
    out = tmp_path / "artifact"
    code = main(["train-dual-encoder", "--data", str(synthetic_data), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--translations",
                 str(synthetic_data / "ru"), "--name", "smoke", "--version", "0.0.1",
                 "--image-towers", "lite0", "--image-blocks", "final_mean,mid_mean",
                 "--epochs", "30", "--batch-size", "16", "--patience", "30", "--lr", "0.003",
                 "--image-dropout", "0.1", "--flip", "false"])
    assert code == 0
    for name in ("config.json", "heads.safetensors", "metrics.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["name"] == "smoke" and metrics["version"] == "0.0.1"
    # Photos of 18 distinct colour/shape pairs: trained heads must rank far above chance.
    assert metrics["flickr8k_test"]["MRR"] > 1.5 * metrics["random"]["flickr8k_test"]["MRR"]
    assert set(metrics["russian"]) == {"seed_test", "flickr8k_test_caption0"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "smoke@0.0.1" in card and "train-dual-encoder" in card

    encoder = load_encoder(f"dual:{out}")
    assert encoder.name == "smoke@0.0.1"
    texts = encoder.encode_texts(["a red square", "красный квадрат"])
    assert texts.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)
    red = synthetic_data / "flickr8k" / "images_224" / "000_red_square.jpg"
    from engine.encoders.base import encode_images

    photo = encode_images(encoder, [red])
    assert photo.shape == (1, 256)


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    code = main(["train-dual-encoder", "--data", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "missing" in capsys.readouterr().err


def test_compare_trains_every_candidate_and_writes_the_table(synthetic_data: Path,
                                                             tmp_path: Path) -> None:
    """`--compare` measures every recipe, English and Russian, and the card says which won."""
    from training.train_command import CANDIDATES

    out = tmp_path / "artifact"
    code = main(["train-dual-encoder", "--data", str(synthetic_data), "--out", str(out),
                 "--cache", str(tmp_path / "cache"), "--translations",
                 str(synthetic_data / "ru"), "--compare", "--epochs", "2", "--batch-size", "16",
                 "--patience", "2"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["comparison"]
    assert [row["recipe"] for row in rows] == list(CANDIDATES)
    for row in rows:
        assert 0.0 <= row["test R@5"] <= 1.0 and 0.0 <= row["dev RU R@5"] <= 1.0
    best = max(rows, key=lambda row: row["selection score"])
    chosen = json.loads((out / "config.json").read_text())["extra"]["train_config"]
    expected = CANDIDATES[best["recipe"]].to_dict() | {"epochs": 2, "batch_size": 16,
                                                       "patience": 2}
    assert chosen == json.loads(json.dumps(expected))
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Recipes compared" in card and best["recipe"] in card
