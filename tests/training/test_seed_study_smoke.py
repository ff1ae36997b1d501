"""`training.main(["seed-study", ...])` end to end on a tiny synthetic dataset in the seed
layout (the data README's file formats), with a randomly initialised ResNet-18 weights file
and a tiny untrained dual-encoder artifact: checks that every output is written and shaped as
the issue asks, not that the numbers are good."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training
from engine.rerank import load_reranker

COLOURS = [(220, 30, 30), (30, 190, 40), (30, 50, 220), (235, 225, 30), (10, 10, 10),
           (245, 245, 245)]
NAMES = ["red", "green", "blue", "yellow", "black", "white"]


def _photo(path: Path, colour: tuple[int, int, int], shape: int, size: tuple[int, int]) -> None:
    pixels = np.full((size[1], size[0], 3), 128, dtype=np.uint8)
    if shape == 0:
        pixels[size[1] // 4: 3 * size[1] // 4, size[0] // 4: 3 * size[0] // 4] = colour
    else:
        pixels[size[1] // 3: 2 * size[1] // 3, :] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


@pytest.fixture(scope="module")
def seed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/seed (12 train photos, 4 test photos, the five tables) and data/flickr8k captions.

    Photos t11 and t03 have child captions (flagged); query t03#0 mentions a boy (restricted);
    query t02#1 appears only in the crowd table (its text must be recovered from the
    captions); one test query asks for a girl (refused).
    """
    root = tmp_path_factory.mktemp("seeddata")
    seed, flickr = root / "seed", root / "flickr8k"
    flickr.mkdir(parents=True)
    captions: dict[str, list[str]] = {}
    train = [f"t{i:02d}.jpg" for i in range(12)]
    test = [f"s{i:02d}.jpg" for i in range(4)]
    for i, name in enumerate(train + test):
        colour, shape = i % 6, (i // 6) % 2
        folder = seed / ("train_images" if name.startswith("t") else "test_images")
        _photo(folder / name, COLOURS[colour], shape, (200 + 10 * i, 160))
        what = f"{NAMES[colour]} {'square' if shape == 0 else 'stripe'}"
        captions[name] = [f"a {what} on grey", f"one {what}", f"the {what} again",
                          f"a grey picture with a {what}", f"{what}"]
    captions["t03.jpg"][0] = "a boy looks at a yellow square"
    captions["t11.jpg"] = ["a child in a white room"] * 3 + ["a white stripe", "white"]
    tokens = [f"{name}#{n}\t{c}" for name, caps in captions.items() for n, c in enumerate(caps)]
    (flickr / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")

    pairs, expert, crowd = [], [], []
    for i, name in enumerate(train):
        query_id = f"{name}#0"
        for j in (0, 1, 2, 5):
            image = train[(i + j) % 12]
            pairs.append(f"{image},{query_id},{captions[name][0]}")
            scores = (4, 4, 3) if j == 0 else (1, 1, 2) if j != 2 else (2, 3, 2)
            expert.append(f"{image}\t{query_id}\t" + "\t".join(map(str, scores)))
        for j in (0, 3, 4, 6, 7):
            image = train[(i + j) % 12]
            share = 1.0 if j == 0 else 0.0
            crowd.append(f"{image}\t{query_id}\t{share}\t{int(3 * share)}\t{int(3 - 3 * share)}")
    for j in range(4):  # a crowd-only query whose text is not in train_dataset.csv
        share = 1.0 if j == 0 else 0.0
        crowd.append(f"{train[(2 + j) % 12]}\tt02.jpg#1\t{share}\t{int(3 * share)}\t"
                     f"{int(3 - 3 * share)}")
    seed.mkdir(exist_ok=True)
    (seed / "train_dataset.csv").write_text("image,query_id,query_text\n" + "\n".join(pairs)
                                            + "\n", encoding="utf-8")
    (seed / "ExpertAnnotations.tsv").write_text("\n".join(expert) + "\n", encoding="utf-8")
    (seed / "CrowdAnnotations.tsv").write_text("\n".join(crowd) + "\n", encoding="utf-8")
    lines = ["|query_id|query_text|image"]
    for k, name in enumerate(test):
        for n in range(2):
            lines.append(f"{2 * k + n}|{name}#{n}|{captions[name][n]}|{name}")
    lines[1] = f"0|{test[0]}#0|a little girl next to a red square|{test[0]}"
    (seed / "test_queries.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (seed / "test_images.csv").write_text("image\n" + "\n".join(test) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_dual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained dual-encoder artifact over EfficientNet-Lite0 and MiniLM (no e5)."""
    from training.artifacts import save_artifact
    from training.dual_encoder import TrainConfig, build_heads

    torch.manual_seed(0)
    config = TrainConfig(image_towers=("lite0",), image_blocks=("final_mean",),
                         text_towers=("minilm",), embed_dim=32)
    heads = build_heads(config, 1280, 384, "tiny-dual", "0.0.1")
    out = tmp_path_factory.mktemp("dual") / "tiny-dual"
    return save_artifact(heads, out, {"name": "tiny-dual"}, "# tiny\n")


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torchvision ResNet-18 state dict (no download)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet") / "resnet18-random.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return path


def test_seed_study_writes_every_output(seed_data: Path, tiny_dual: Path, resnet_weights: Path,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    out = tmp_path / "study"
    code = training.main(["seed-study", "--data", str(seed_data), "--out", str(out), "--cache",
                 str(tmp_path / "cache"), "--dual-model", f"dual:{tiny_dual}",
                 "--resnet18-weights", str(resnet_weights), "--folds", "3", "--threads", "1",
                 "--mlp-epochs", "2", "--depth", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pair vectors" in printed and "random ranking" in printed

    for name in ("report.md", "report.html", "metrics.json", "eda_expert_scores.png",
                 "eda_target.png", "sheet_dual_cosine.png", "sheet_combination.png",
                 "reranker/config.json", "reranker/MODEL_CARD.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    models = {"constant", "ridge", "forest", "lightgbm", "mlp", "dual_cosine", "dual_head"}
    assert set(metrics["regression"]) == models
    assert set(metrics["retrieval"]) == models
    for row in metrics["regression"].values():
        assert {"mse", "rmse", "mae", "spearman", "ndcg@5"} <= set(row)
    for row in metrics["retrieval"].values():
        assert {"R@1", "R@5", "R@10", "MRR"} <= set(row)
        assert row["refused"] == 1 and row["n"] == 7
    # Ties count against the target: the constant model never ranks the photo first.
    assert metrics["retrieval"]["constant"]["R@1"] == 0.0

    excluded = metrics["excluded"]
    # Any caption mentioning a child flags the photo: t11 (3 captions) and t03 (1 caption).
    assert excluded["photos_flagged"] == 2
    assert excluded["caption_thresholds"][2] == {"min_captions": 3, "photos": 1}
    assert excluded["queries_restricted"] == 2  # t03#0 "a boy ...", t11#0 "a child ..."
    assert excluded["pairs_kept"] < excluded["pairs_before"]
    assert excluded["test_queries_refused"] == 1
    # 384 MiniLM + 512 ResNet-18 features; the dual view is 32 products + the cosine.
    assert metrics["shapes"]["train_pairs"]["seed"][1] == 384 + 512
    assert metrics["shapes"]["train_pairs"]["dual"][1] == 33
    assert metrics["shapes"]["test_pairs"]["seed"][0] == 8 * 4
    ablation = metrics["ablation"]["ridge"]
    assert ablation["expert+crowd+recovered"]["pairs"] > ablation["expert+crowd"]["pairs"]
    assert ablation["expert+crowd"]["pairs"] > ablation["expert"]["pairs"]

    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") >= 5
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Conclusion" in report and "0.052" in report

    reranker = load_reranker(out / "reranker")
    assert reranker.config.features in ("seed", "dual")
    assert reranker.name == "seed-reranker@1.0.0"


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    code = training.main(["seed-study", "--data", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    assert "missing" in capsys.readouterr().err
