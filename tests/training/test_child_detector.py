"""The child detector's training: metrics, threshold rule, leak simulation, and a smoke run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.child_filter import ChildDetector, Scorer, build_child_filter
from tests.engine.conftest import TINY_CLIP
from training import cli
from training.child_detector import (
    LeakSimulator,
    binary_metrics,
    choose_threshold,
    fit_logistic,
    fit_mlp,
    out_of_fold,
    roc_auc,
    threshold_at_recall,
    weak_labels,
)


def test_roc_auc_matches_the_pair_count_definition() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert np.isnan(roc_auc(scores, np.zeros(60, bool)))


def test_threshold_at_recall_and_binary_metrics() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 0], dtype=bool)
    assert threshold_at_recall(scores, labels, 0.5) == 0.7
    assert threshold_at_recall(scores, labels, 0.75) == 0.6
    assert threshold_at_recall(scores, labels, 0.97) == 0.4  # all four positives
    m = binary_metrics(scores, labels, 0.6)
    assert (m["precision"], m["recall"], m["hidden"]) == (0.75, 0.75, 0.5)
    assert m["positives"] == 4 and m["n"] == 8


def test_weak_labels_use_word_forms() -> None:
    from engine.legal import LegalFilter

    legal = LegalFilter.default()
    labels = weak_labels({"a.jpg": ["Two boys play", "a kidney bean"], "b.jpg": ["a dog"]},
                         legal.mentions_children)
    assert labels == {"a.jpg": (True, False), "b.jpg": (False,)}


def _simulator() -> tuple[LeakSimulator, np.ndarray]:
    """Four photos, one caption each; photos 1 and 3 show children; photo 3's caption mentions
    the child, so it is refused and not asked. Caption q ranks photos q, q+1, q+2, q+3."""
    photos = np.eye(4, dtype=np.float32)
    captions = np.stack([np.roll(np.array([1.0, 0.5, 0.25, 0.0], np.float32), q)
                         for q in range(4)])
    labels = np.array([False, True, False, True])
    refused = np.array([False, False, False, True])
    sim = LeakSimulator(photos, captions, np.arange(4), refused, labels, np.arange(4),
                        size=4, samples=2, k=2)
    return sim, labels


def test_leak_rate_counts_children_among_shown_photos() -> None:
    sim, labels = _simulator()
    # Queries 0, 1, 2 show {0, 1}, {1, 2}, {2, 3}: 3 children among 6 shown photos.
    assert sim.leak_rate(np.zeros(4, bool)) == pytest.approx(3 / 6)
    # Photo 1 hidden: {0, 2}, {2, 3}, {2, 3}: the next allowed photos fill in, 2 of 6 leak.
    assert sim.leak_rate(np.array([False, True, False, False])) == pytest.approx(2 / 6)
    assert sim.leak_rate(labels) == 0.0  # hide the children: nothing leaks
    assert sim.leak_rate(np.array([True, False, True, False])) == 1.0


def test_choose_threshold_hides_least_while_meeting_both_rules() -> None:
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.random(n) < 0.4
    scores = np.clip(labels * 0.35 + rng.random(n) * 0.65, 0, 1)
    photos = rng.normal(size=(n, 8)).astype(np.float32)
    photos /= np.linalg.norm(photos, axis=1, keepdims=True)
    sim = LeakSimulator(photos, photos, np.arange(n), np.zeros(n, bool), labels,
                        np.arange(n), size=50, samples=5, k=10)
    rows = np.arange(n)
    loose, loose_stats = choose_threshold(scores, labels, rows, [sim], min_recall=0.9,
                                          leak_target=1.0)
    assert loose == pytest.approx(threshold_at_recall(scores, labels, 0.9))
    strict, stats = choose_threshold(scores, labels, rows, [sim, sim], min_recall=0.9,
                                     leak_target=0.01)
    assert strict <= loose and stats["recall"] >= 0.9
    assert stats["simulated_leak"] <= 0.01 and stats["hidden"] >= loose_stats["hidden"]
    # The next two lower candidate thresholds keep the leak under the target as well.
    grid = np.unique(np.quantile(scores, np.linspace(0, 1, 121)))
    assert all(sim.leak_rate(scores >= t) <= 0.01 for t in grid[grid < strict][-2:])
    # Recall must also hold on the calibration rows (TRAIN scored out of fold).
    half = np.arange(n // 2)
    calibrated, cstats = choose_threshold(scores, labels, half, [sim], min_recall=0.9,
                                          leak_target=1.0, calibration_rows=np.arange(n))
    assert calibrated == pytest.approx(min(threshold_at_recall(scores[half], labels[half], 0.9),
                                           threshold_at_recall(scores, labels, 0.9)))
    assert cstats["calibration_recall"] >= 0.9


def test_out_of_fold_never_scores_a_row_with_a_model_that_saw_it() -> None:
    seen: list[set[int]] = []

    def fit(x: np.ndarray, y: np.ndarray) -> Scorer:
        ids = {int(v) for v in x[:, 0]}
        seen.append(ids)
        return _Lookup(ids)

    x = np.arange(50, dtype=np.float32)[:, None]
    rows = np.arange(10, 50)
    scores = out_of_fold(fit, x, np.zeros(50, bool), rows, folds=5, seed=0)
    assert len(seen) == 5 and (scores == 0).all()
    assert set().union(*seen) == set(range(10, 50))


class _Lookup:
    """1 for rows whose id the model was fitted on, else 0."""

    kind = "lookup"

    def __init__(self, ids: set[int]) -> None:
        self.ids = ids

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return np.array([float(int(v) in self.ids) for v in embeddings[:, 0]], np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


def test_fitted_scorers_separate_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    y = x[:, 0] + 0.5 * x[:, 1] > 0.2
    for scorer in (fit_logistic(x, y, 1.0), fit_mlp(x, y, 16, 1e-3, seed=0)):
        assert roc_auc(scorer(x), y) > 0.97


# ---------------------------------------------------------------------------- smoke run


COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 50, 220),
           "yellow": (235, 225, 30), "black": (10, 10, 10), "white": (245, 245, 245)}


@pytest.fixture(scope="module")
def child_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 photos in the shared data's layout; red and blue ones are captioned as children."""
    root = tmp_path_factory.mktemp("data")
    images = root / "flickr8k" / "images_224"
    images.mkdir(parents=True)
    seed_images = root / "seed" / "test_images"
    seed_images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names, tokens = [], []
    for i in range(48):
        colour = list(COLOURS)[i % len(COLOURS)]
        name = f"{i:03d}_{colour}.jpg"
        pixels = np.full((64, 64, 3), COLOURS[colour], np.uint8)
        pixels[rng.integers(0, 64, 20), rng.integers(0, 64, 20)] = 128
        Image.fromarray(pixels).save(images / name)
        names.append(name)
        who = "a little boy" if colour in ("red", "blue") else "a man"
        for n, caption in enumerate((f"{who} in {colour}", f"{colour} picture", f"a {colour} "
                                     "scene", f"something {colour}", f"{colour} again")):
            tokens.append(f"{name}#{n}\t{caption}")
    (root / "flickr8k" / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n")
    splits = {"train": names[:30], "dev": names[30:42], "test": names[42:]}
    for split, members in splits.items():
        (root / "flickr8k" / f"Flickr_8k.{split}Images.txt").write_text("\n".join(members))
    seed = splits["dev"][:3]
    for name in seed:
        Image.open(images / name).resize((90, 70)).save(seed_images / name)
    with (root / "seed" / "test_images.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["image"], *[[n] for n in seed]])
    return root


def test_train_child_detector_smoke(child_data: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "TinyTestViT.json"
    config.write_text(json.dumps(TINY_CLIP), encoding="utf-8")
    spec = f"open_clip:{config}:random"
    out = tmp_path / "detector"
    code = cli.main(["train-child-detector", "--data", str(child_data), "--out", str(out),
                     "--model", spec, "--samples", "3", "--version", "0.1"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["detector"] == "child-detector@0.1"
    for name in ("detector.json", "weights.npz", "metrics.json", "MODEL_CARD.md"):
        assert (out / name).is_file()
    detector = ChildDetector.load(out)
    assert detector.encoder == printed["encoder"] == f"open_clip:{config}:random"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["chosen"]) == {"flickr8k_dev", "flickr8k_test", "seed_test_photos"}
    assert metrics["splits"] == {"train": 30, "dev": 9, "test": 6, "seed_test_photos": 3}
    assert metrics["labels"]["positive_share"]["train"] == pytest.approx(10 / 30, abs=1e-4)
    assert metrics["chosen"]["flickr8k_dev"]["recall"] >= 0.97
    assert {row["candidate"] for row in metrics["candidates"]} >= {
        "logistic C=0.1", "mlp 64 hidden", "zero-shot prompts"}
    card = (out / "MODEL_CARD.md").read_text()
    assert f"{detector.threshold:.4g}" in card and "seed test photos" in card
    child_filter = build_child_filter(detector.encoder, detector_dir=out)
    assert child_filter.detector_id == "child-detector@0.1"

    assert cli.main(["train-child-detector", "--data", str(tmp_path / "nowhere"), "--out",
                     str(out), "--model", spec]) == 2
    assert "missing" in capsys.readouterr().err
