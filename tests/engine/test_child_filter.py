"""The photo-side child filter: detectors, stored scores and flags, re-flagging, search.

Deterministic detectors over the tiny random model: `single_out` builds a logistic detector
that flags exactly the photos whose embeddings it is given (the model's scores mean nothing,
but which photo is flagged must be known for the assertions).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from engine.child_filter import (
    PACKAGED_DETECTOR,
    ChildDetector,
    ChildFilter,
    ChildFilterError,
    KNNScorer,
    LogisticScorer,
    MeanScorer,
    MLPScorer,
    ZeroShotScorer,
    build_child_filter,
)
from engine.encoders.base import Encoder
from engine.images import ImagePrep
from engine.index import CHILD_FLAGS, CHILD_SCORES, PhotoIndex, reflag_index, update_index
from engine.legal import DISCLAIMER_EN, DISCLAIMER_RU, LegalFilter
from engine.search import SearchEngine


class CountingEncoder:
    """Wraps an encoder and counts `encode_pixels` calls: proof that nothing is re-embedded."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.pixel_calls = 0
        self.pixel_rows = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def image_prep(self) -> ImagePrep:
        return self.inner.image_prep

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self.pixel_calls += 1
        self.pixel_rows += len(pixels)
        return self.inner.encode_pixels(pixels)


def single_out(encoder_name: str, embeddings: np.ndarray, targets: Sequence[int],
               name: str = "test-detector", version: str = "1") -> ChildDetector:
    """A logistic detector flagging exactly rows `targets` of `embeddings` (threshold 0.5).

    One target: the weight is its embedding and the bias sits halfway between the target's
    self-similarity and the most similar other row, scaled so that scores are ~0 or ~1.
    Several targets: the mean of their embeddings, same idea on the similarity to it.
    """
    direction = embeddings[list(targets)].mean(axis=0)
    sims = embeddings @ direction
    inside = sims[list(targets)].min()
    others = np.delete(sims, list(targets))
    outside = others.max() if len(others) else inside - 1.0
    assert inside > outside, "targets cannot be separated by one direction"
    gain = 50.0 / float(inside - outside)
    scorer = LogisticScorer(weight=(direction * gain).astype(np.float32),
                            bias=-gain * float(inside + outside) / 2,
                            shift=np.zeros(len(direction), np.float32),
                            scale=np.ones(len(direction), np.float32))
    return ChildDetector(name=name, version=version, encoder=encoder_name, scorer=scorer,
                         threshold=0.5)


@pytest.fixture(scope="module")
def legal() -> LegalFilter:
    return LegalFilter.default()


@pytest.fixture()
def indexed(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path) -> PhotoIndex:
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    return PhotoIndex.open(tmp_path / "idx")


def _rows(index: PhotoIndex, *paths: str) -> list[int]:
    rows = [index.row(p) for p in paths]
    assert all(r is not None for r in rows)
    return [int(r) for r in rows if r is not None]


# -------------------------------------------------------------------------------- scorers


def test_scorers_round_trip_through_an_artifact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    logistic = LogisticScorer(rng.normal(size=8).astype(np.float32), 0.3,
                              np.zeros(8, np.float32), np.ones(8, np.float32))
    mlp = MLPScorer(rng.normal(size=(8, 4)).astype(np.float32), np.zeros(4, np.float32),
                    rng.normal(size=4).astype(np.float32), -0.1, np.full(8, 0.1, np.float32),
                    np.full(8, 2.0, np.float32))
    zero = ZeroShotScorer(np.eye(3, 8, dtype=np.float32), scale=10.0)
    for scorer in (logistic, mlp, zero, MeanScorer((mlp, zero))):
        detector = ChildDetector("d", "2", "enc@1", scorer, threshold=0.4, info={"x": 1})
        detector.save(tmp_path / scorer.kind, card="# card\n", metrics={"auc": 0.9})
        loaded = ChildDetector.load(tmp_path / scorer.kind)
        assert loaded.kind == scorer.kind and loaded.identity == "d@2"
        assert loaded.encoder == "enc@1" and loaded.threshold == 0.4 and loaded.info == {"x": 1}
        scores = loaded.scores(x)
        assert scores.dtype == np.float32 and ((scores >= 0) & (scores <= 1)).all()
        np.testing.assert_allclose(scores, scorer(x), atol=1e-6)
        assert (tmp_path / scorer.kind / "MODEL_CARD.md").read_text() == "# card\n"


def test_knn_scorer_stored_in_float16_scores_alike(tmp_path: Path) -> None:
    """A big reference is stored as float16; training rounds it first, so the saved detector
    gives exactly the scores its threshold was chosen on."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(1600, 64)).astype(np.float16).astype(np.float32)
    assert reference.size > 100_000  # the size at which `save` switches to float16
    labels = (rng.random(1600) < 0.4).astype(np.float32)
    scorer = KNNScorer(reference, labels, k=7)
    queries = rng.normal(size=(50, 64)).astype(np.float32)
    detector = ChildDetector("knn", "1", "enc@1", scorer, threshold=3 / 7)
    detector.save(tmp_path / "knn", card="", metrics={})
    loaded = ChildDetector.load(tmp_path / "knn")
    assert isinstance(loaded.scorer, KNNScorer) and loaded.scorer.k == 7
    np.testing.assert_array_equal(loaded.scores(queries), scorer(queries))
    assert set(np.unique(scorer(queries) * 7).round(6)) <= set(range(8))  # shares of k


def test_zero_shot_probability_is_the_child_class_share() -> None:
    classes = np.eye(3, 4, dtype=np.float32)  # class 0 = child
    scorer = ZeroShotScorer(classes, scale=100.0)
    photos = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    scores = scorer(photos)
    assert scores[0] > 0.99 and scores[1] < 0.01 and scores[2] == pytest.approx(1 / 3)


def test_incomplete_artifact_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ChildFilterError, match="train-child-detector"):
        ChildDetector.load(tmp_path)


# --------------------------------------------------------------------------------- policy


def _save(detector: ChildDetector, directory: Path) -> Path:
    return detector.save(directory, card="card\n", metrics={})


def test_filter_modes(tmp_path: Path, tiny_encoder: Encoder,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    rows = np.eye(2, tiny_encoder.dim, dtype=np.float32)
    mine = _save(single_out(tiny_encoder.name, rows, [0]), tmp_path / "mine")
    other = _save(single_out("another-model@3", rows, [0]), tmp_path / "other")

    trained = build_child_filter(tiny_encoder.name, detector_dir=mine)
    assert trained.detector_id == "test-detector@1" and trained.threshold == 0.5
    assert trained.version == "test-detector@1>=0.5000"
    raised = build_child_filter(tiny_encoder.name, detector_dir=mine, threshold=0.9)
    assert raised.threshold == 0.9 and raised.version.endswith(">=0.9000")

    # An explicitly named detector for another encoder is an error, not a silent fallback.
    with pytest.raises(ChildFilterError, match="another-model@3"):
        build_child_filter(tiny_encoder.name, detector_dir=other,
                           encoder=lambda: tiny_encoder)
    # The packaged one for another encoder: fall back to zero-shot prompts...
    monkeypatch.setattr("engine.child_filter.PACKAGED_DETECTOR", other)
    fallback = build_child_filter(tiny_encoder.name, encoder=lambda: tiny_encoder)
    assert fallback.detector is not None and fallback.detector.kind == "zero-shot"
    assert fallback.detector_id.startswith("zero-shot@") and fallback.threshold == 0.2
    assert build_child_filter(tiny_encoder.name, encoder=lambda: tiny_encoder
                              ).detector_id == fallback.detector_id  # stable identity
    # ... unless the deployment demands a trained detector.
    with pytest.raises(ChildFilterError, match="trained for encoder"):
        build_child_filter(tiny_encoder.name, mode="trained", encoder=lambda: tiny_encoder)
    with pytest.raises(ChildFilterError, match="no encoder"):
        build_child_filter(tiny_encoder.name, mode="zero-shot")
    off = build_child_filter(tiny_encoder.name, mode="off")
    assert not off.enabled and off.version == "off"
    assert not off.flags(off.scores(rows)).any()


# ------------------------------------------------------------------- index: scores, flags


def test_indexing_stores_scores_and_flags(tiny_encoder: Encoder, photo_dir: Path,
                                          tmp_path: Path, indexed: PhotoIndex) -> None:
    red, blue = _rows(indexed, "red.jpg", "blue.webp")
    detector = single_out(tiny_encoder.name, np.asarray(indexed.embeddings), [red, blue])
    child_filter = ChildFilter.of(detector)
    root = tmp_path / "scored"
    update_index(photo_dir, root, tiny_encoder, progress=False, child_filter=child_filter)
    index = PhotoIndex.open(root)
    flags = np.load(index.generation / CHILD_FLAGS)
    scores = np.load(index.generation / CHILD_SCORES)
    assert [index.paths[r] for r in np.flatnonzero(flags)] == ["blue.webp", "red.jpg"]
    assert ((scores >= 0.5) == flags).all()
    info = index.child_filter_info
    assert info is not None and info["detector"] == "test-detector@1" and info["flagged"] == 2
    assert info["version"] == child_filter.version
    np.testing.assert_array_equal(index.child_scores(child_filter), scores)


def test_reflag_rescores_without_reembedding(tiny_encoder: Encoder, photo_dir: Path,
                                             tmp_path: Path, indexed: PhotoIndex) -> None:
    counting = CountingEncoder(tiny_encoder)
    root = tmp_path / "counted"
    red, grey = _rows(indexed, "red.jpg", "trips/grey.JPG")
    embeddings = np.asarray(indexed.embeddings)
    first = ChildFilter.of(single_out(tiny_encoder.name, embeddings, [red], version="1"))
    update_index(photo_dir, root, counting, progress=False, child_filter=first)
    assert counting.pixel_rows == 6
    before = PhotoIndex.open(root)
    inode = os.stat(before.generation / "embeddings.npy").st_ino

    second = ChildFilter.of(single_out(tiny_encoder.name, embeddings, [grey], version="2"))
    counting.pixel_calls = counting.pixel_rows = 0
    report = reflag_index(root, second)
    assert counting.pixel_calls == 0  # nothing decoded or embedded
    assert report.written and report.flagged_before == 1 and report.flagged == 1
    assert report.newly_flagged == 1 and report.unflagged == 1 and report.total == 6
    after = PhotoIndex.open(root)
    assert after.generation != before.generation
    assert os.stat(after.generation / "embeddings.npy").st_ino == inode  # hard link
    np.testing.assert_array_equal(np.asarray(after.embeddings), embeddings)
    assert [after.paths[r] for r in np.flatnonzero(np.load(after.generation / CHILD_FLAGS))
            ] == ["trips/grey.JPG"]

    # Only the threshold changes: same detector, new flags, still no embedding.
    stricter = ChildFilter.of(second.detector, threshold=0.0) if second.detector else second
    again = reflag_index(root, stricter)
    assert again.flagged == 6 and counting.pixel_calls == 0
    assert reflag_index(root, stricter).written is False  # already flagged by it

    # Re-indexing unchanged photos with another filter re-flags, also without embedding.
    report_update = update_index(photo_dir, root, counting, progress=False, child_filter=first)
    assert report_update.embedded == 0 and counting.pixel_calls == 0
    info = PhotoIndex.open(root).child_filter_info
    assert info is not None and info["version"] == first.version and info["flagged"] == 1


def test_zero_shot_reflag_uses_the_text_side_only(tiny_encoder: Encoder, photo_dir: Path,
                                                  tmp_path: Path) -> None:
    counting = CountingEncoder(tiny_encoder)
    root = tmp_path / "zs"
    update_index(photo_dir, root, counting, progress=False)
    assert PhotoIndex.open(root).child_filter_info is None  # written without a filter
    counting.pixel_calls = 0
    zero_shot = build_child_filter(counting.name, mode="zero-shot", encoder=lambda: counting)
    report = reflag_index(root, zero_shot)
    assert counting.pixel_calls == 0 and report.flagged_before is None and report.written
    index = PhotoIndex.open(root)
    expected = zero_shot.scores(np.asarray(index.embeddings))
    np.testing.assert_allclose(np.load(index.generation / CHILD_SCORES), expected)


def test_unscored_index_is_scored_in_memory(tiny_encoder: Encoder, indexed: PhotoIndex,
                                            legal: LegalFilter) -> None:
    red = _rows(indexed, "red.jpg")[0]
    child_filter = ChildFilter.of(single_out(tiny_encoder.name,
                                             np.asarray(indexed.embeddings), [red]))
    assert indexed.stored_scores is None
    engine = SearchEngine(tiny_encoder, indexed, legal, child_filter)
    hits = engine.search("a photo", k=10).hits
    assert len(hits) == 5 and "red.jpg" not in {h.photo for h in hits}


# ----------------------------------------------------------------------------- searching


def test_flagged_photos_are_never_returned_and_k_is_filled(
        tiny_encoder: Encoder, indexed: PhotoIndex, legal: LegalFilter) -> None:
    red, blue = _rows(indexed, "red.jpg", "blue.webp")
    flagged = {"red.jpg", "blue.webp"}
    child_filter = ChildFilter.of(single_out(tiny_encoder.name, np.asarray(indexed.embeddings),
                                             [red, blue]))
    engine = SearchEngine(tiny_encoder, indexed, legal, child_filter)
    unfiltered = SearchEngine(tiny_encoder, indexed, legal, ChildFilter.off())
    for query in ("a red photo", "something blue", "grey", "white wall"):
        full = [h.photo for h in unfiltered.search(query, k=6).hits]
        for k in (1, 2, 3, 4):  # at least k allowed photos exist: exactly k come back
            result = engine.search(query, k=k)
            photos = [h.photo for h in result.hits]
            assert len(photos) == k and not flagged & set(photos)
            assert photos == [p for p in full if p not in flagged][:k]  # next allowed ones
            last = full.index(photos[-1])
            assert result.withheld == len(flagged & set(full[:last]))
            assert [h.withheld_above for h in result.hits] == [
                len(flagged & set(full[:full.index(p)])) for p in photos]
        everything = engine.search(query, k=6)  # only 4 allowed: all of them, all withheld
        assert len(everything.hits) == 4 and everything.withheld == 2
        assert not unfiltered.search(query, k=6).withheld


def test_paging_counts_withheld_from_the_top(tiny_encoder: Encoder, indexed: PhotoIndex,
                                             legal: LegalFilter) -> None:
    rows = _rows(indexed, "red.jpg", "trips/yellow.jpg")
    engine = SearchEngine(tiny_encoder, indexed, legal, ChildFilter.of(
        single_out(tiny_encoder.name, np.asarray(indexed.embeddings), rows)))
    whole = engine.search("a photo", k=4)
    first, second = engine.search("a photo", k=2), engine.search("a photo", k=2, offset=2)
    assert [h.photo for h in first.hits + second.hits] == [h.photo for h in whole.hits]
    assert second.withheld == whole.withheld and first.withheld <= second.withheld
    assert engine.search("a photo", k=2, offset=4).hits == []
    assert engine.search("a photo", k=2, offset=4).withheld == 2


def test_a_query_photo_showing_a_child_is_refused(
        tiny_encoder: Encoder, indexed: PhotoIndex, legal: LegalFilter, photo_dir: Path) -> None:
    red = _rows(indexed, "red.jpg")[0]
    engine = SearchEngine(tiny_encoder, indexed, legal, ChildFilter.of(
        single_out(tiny_encoder.name, np.asarray(indexed.embeddings), [red])))
    refused = engine.search_by_photo(photo_dir / "red.jpg", k=3, language="ru")
    assert refused.blocked and refused.message == DISCLAIMER_RU and refused.hits == []
    assert refused.reason is not None and "query photo shows a child" in refused.reason
    assert refused.to_json()["withheld"] == 0
    allowed = engine.search_by_photo((photo_dir / "blue.webp").read_bytes(), k=5)
    assert not allowed.blocked and allowed.hits[0].photo == "blue.webp"
    assert len(allowed.hits) == 5 and "red.jpg" not in {h.photo for h in allowed.hits}
    assert engine.search("a little girl").message == DISCLAIMER_EN  # the text rule stays


def test_filter_version_names_lexicon_detector_threshold_and_moderation(
        tiny_encoder: Encoder, indexed: PhotoIndex, legal: LegalFilter) -> None:
    red = _rows(indexed, "red.jpg")[0]
    detector = single_out(tiny_encoder.name, np.asarray(indexed.embeddings), [red])
    engine = SearchEngine(tiny_encoder, indexed, legal, ChildFilter.of(detector, 0.75))
    result = engine.search("a photo", k=2)
    assert result.filter_version == (f"legal={legal.fingerprint};child=test-detector@1>=0.7500;"
                                     "mod=none")
    assert len(result.filter_version) <= 128
    assert result.to_json()["filter_version"] == result.filter_version
    assert engine.search("kids").filter_version == result.filter_version  # refusals too


def test_each_search_logs_the_filter_version(tiny_encoder: Encoder, indexed: PhotoIndex,
                                             legal: LegalFilter,
                                             caplog: pytest.LogCaptureFixture) -> None:
    red = _rows(indexed, "red.jpg")[0]
    engine = SearchEngine(tiny_encoder, indexed, legal, ChildFilter.of(
        single_out(tiny_encoder.name, np.asarray(indexed.embeddings), [red]), 0.5))
    with caplog.at_level("INFO", logger="engine.search"):
        engine.search("a photo", k=2)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("search:")]
    assert len(logged) == 1 and engine.filter_version in logged[0]
    assert f"legal={legal.fingerprint}" in logged[0] and ">=0.5000" in logged[0]


# ----------------------------------------------------------- the packaged (real) detector


@pytest.mark.skipif(not (PACKAGED_DETECTOR / "detector.json").is_file(),
                    reason="the packaged child detector (engine/models/child-detector) is not "
                           "trained yet: python -m training train-child-detector")
def test_packaged_detector_is_for_the_packaged_model_and_carries_its_numbers() -> None:
    import json

    from engine.encoders.dual import DEFAULT_ARTIFACT

    detector = ChildDetector.load(PACKAGED_DETECTOR)
    config = json.loads((DEFAULT_ARTIFACT / "config.json").read_text(encoding="utf-8"))
    assert detector.encoder == f"{config['name']}@{config['version']}"
    assert 0.0 < detector.threshold < 1.0 and detector.kind != "zero-shot"
    metrics = json.loads((PACKAGED_DETECTOR / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["threshold"] == pytest.approx(detector.threshold, abs=1e-6)
    assert metrics["chosen"]["flickr8k_dev"]["recall"] >= metrics["rule"]["min_recall"]
    card = (PACKAGED_DETECTOR / "MODEL_CARD.md").read_text(encoding="utf-8")
    for block in ("flickr8k_test", "seed_test_photos"):
        numbers = metrics["chosen"][block]
        assert {"precision", "recall", "roc_auc", "hidden"} <= set(numbers)
        assert f"| {numbers['precision']:.3f} | {numbers['recall']:.3f} | " in card
    assert "python -m training train-child-detector" in card
    assert "zero-shot" in card.lower() and "mlp" in card.lower() and "logistic" in card.lower()
    # What the engine picks for the packaged model without being told: this detector.
    chosen = build_child_filter(detector.encoder)
    assert chosen.detector_id == detector.identity and chosen.threshold == detector.threshold
