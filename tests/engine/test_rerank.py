"""The optional re-ranker: artifacts round-trip, it re-orders the first stage's candidates
when its scorer disagrees with the first stage, and it never returns a photo the first stage
did not (excluded photos stay excluded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.child_filter import ChildFilter
from engine.encoders.base import Encoder
from engine.index import PhotoIndex, update_index
from engine.legal import LegalFilter
from engine.moderation import set_decision
from engine.rerank import (
    LightGBMScorer,
    LinearScorer,
    PairMLP,
    RerankConfig,
    Reranker,
    RerankerError,
    Scorer,
    dual_pair_features,
    load_reranker,
    save_reranker,
    seed_pair_features,
)
from engine.search import SearchEngine


@pytest.fixture()
def index(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path) -> PhotoIndex:
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    return PhotoIndex.open(tmp_path / "idx")


def _save(path: Path, scorer: Scorer, kind: str, features: str = "dual",
          dual_model: str | None = None, depth: int = 30, layers: tuple[int, ...] = (),
          text: str | None = None, image: str | None = None) -> Path:
    config = RerankConfig(name="test-rr", version="0.1", scorer=kind, features=features,
                          dual_model=dual_model, depth=depth, layers=layers, text=text,
                          image=image)
    return save_reranker(path, config, scorer, {"note": "test"}, "# test re-ranker\n")


def _inverse_cosine(path: Path, encoder: Encoder, depth: int) -> Reranker:
    """A dual-feature scorer that ranks by the NEGATED cosine: it disagrees with stage one."""
    coef = np.zeros(encoder.dim + 1, np.float32)
    coef[-1] = -1.0
    return load_reranker(_save(path, LinearScorer(coef, 0.0), "linear",
                               dual_model=encoder.name, depth=depth))


def _engine(encoder: Encoder, index: PhotoIndex, reranker: Reranker | None) -> SearchEngine:
    # The random test model's zero-shot child scores are noise: the detector is off here.
    return SearchEngine(encoder, index, LegalFilter.default(), ChildFilter.off(),
                        reranker=reranker)


def test_every_scorer_kind_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    mlp = PairMLP((6, 8, 1))
    mlp.set_statistics(x)
    import lightgbm

    booster = lightgbm.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                             lightgbm.Dataset(x, y), num_boost_round=5)
    scorers: list[tuple[Scorer, str, tuple[int, ...]]] = [
        (LinearScorer(rng.normal(size=6).astype(np.float32), 0.3), "linear", ()),
        (mlp, "mlp", (6, 8, 1)),
        (LightGBMScorer(booster.model_to_string()), "lightgbm", ()),
    ]
    for number, (scorer, kind, layers) in enumerate(scorers):
        path = _save(tmp_path / f"rr{number}", scorer, kind, dual_model="m@1", layers=layers)
        loaded = load_reranker(path)
        np.testing.assert_allclose(loaded.scorer.predict(x), scorer.predict(x), atol=1e-5)
        assert json.loads((path / "config.json").read_text())["scorer"] == kind
        assert (path / "MODEL_CARD.md").is_file()


def test_pair_features_are_the_trained_layout() -> None:
    text = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    image = np.array([[0.0, 1.0], [0.6, 0.8]], np.float32)
    np.testing.assert_allclose(dual_pair_features(text, image),
                               np.array([[0.0, 0.0, 0.0], [0.36, 0.64, 1.0]]), atol=1e-6)
    assert seed_pair_features(text, image[:, :1]).shape == (2, 3)


def test_reranker_reorders_the_head_and_keeps_the_tail(tiny_encoder: Encoder,
                                                       index: PhotoIndex, tmp_path: Path
                                                       ) -> None:
    reranker = _inverse_cosine(tmp_path / "rr", tiny_encoder, depth=3)
    vector = tiny_encoder.encode_texts(["a red photo"])[0]
    first = index.ranked(vector, 6).rows
    reordered = reranker.rerank("a red photo", vector, first, index)
    rows = [c.row for c, _ in reordered]
    assert rows[:3] == [c.row for c in first[:3]][::-1]  # it disagrees, so the head flips
    assert rows[3:] == [c.row for c in first[3:]]  # below the depth the first stage decides
    assert sorted(rows) == sorted(c.row for c in first)


def test_engine_order_changes_but_only_among_first_stage_photos(
        tiny_encoder: Encoder, index: PhotoIndex, tmp_path: Path) -> None:
    plain = _engine(tiny_encoder, index, None).search("a red photo", k=3)
    reranked = _engine(tiny_encoder, index, _inverse_cosine(tmp_path / "rr", tiny_encoder, 3)
                       ).search("a red photo", k=3)
    assert [h.photo for h in reranked.hits] == [h.photo for h in plain.hits][::-1]
    # Paging stays consistent: the second page is the first stage's, unchanged.
    again = _engine(tiny_encoder, index, _inverse_cosine(tmp_path / "rr2", tiny_encoder, 3))
    everything = again.search("a red photo", k=6)
    second = again.search("a red photo", k=3, offset=3)
    assert [h.photo for h in everything.hits][3:] == [h.photo for h in second.hits]


def test_an_excluded_photo_is_never_returned(tiny_encoder: Encoder, index: PhotoIndex,
                                             tmp_path: Path) -> None:
    vector = tiny_encoder.encode_texts(["a red photo"])[0]
    worst = index.paths[index.ranked(vector, 6).rows[-1].row]
    # The re-ranker prefers the lowest cosine: it would put `worst` first if it saw it.
    reranker = _inverse_cosine(tmp_path / "rr", tiny_encoder, depth=6)
    assert _engine(tiny_encoder, index, reranker).search("a red photo", k=1).hits[0].photo \
        == worst
    set_decision(index.root, worst, "block", note="test")
    result = _engine(tiny_encoder, index, reranker).search("a red photo", k=6)
    assert worst not in [h.photo for h in result.hits]
    assert len(result.hits) == 5


def test_a_dual_reranker_for_another_model_is_refused(tiny_encoder: Encoder,
                                                      index: PhotoIndex, tmp_path: Path
                                                      ) -> None:
    coef = np.zeros(tiny_encoder.dim + 1, np.float32)
    reranker = load_reranker(_save(tmp_path / "rr", LinearScorer(coef, 0.0), "linear",
                                   dual_model="another-model@9"))
    with pytest.raises(RerankerError, match="another-model@9"):
        _engine(tiny_encoder, index, reranker)
    with pytest.raises(RerankerError, match="not found"):
        load_reranker(tmp_path / "missing")


def test_seed_features_come_from_the_query_text_and_the_photo_files(
        tiny_encoder: Encoder, index: PhotoIndex, tmp_path: Path) -> None:
    # Packaged towers: MiniLM (384) for the query, EfficientNet-Lite0 (1280) for the photos.
    coef = np.zeros(384 + 1280, np.float32)
    coef[384:] = 1.0  # a score from the photo features alone: independent of the first stage
    reranker = load_reranker(_save(tmp_path / "rr", LinearScorer(coef, 0.0), "linear",
                                   features="seed", text="minilm", image="lite0", depth=6))
    reranker.check_encoder(tiny_encoder.name)  # seed features work with any index
    vector = tiny_encoder.encode_texts(["a red photo"])[0]
    first = index.ranked(vector, 6).rows
    reordered = reranker.rerank("a red photo", vector, first, index)
    paths = [index.photo_dir / index.paths[c.row] for c in first]
    expected = reranker.photo_features(paths).sum(axis=1)
    assert [c.row for c, _ in reordered] == [first[i].row for i in np.argsort(-expected,
                                                                              kind="stable")]
    features = reranker.pair_features("a red photo", vector, paths, np.zeros((6, 1)))
    assert features.shape == (6, 384 + 1280)
    np.testing.assert_allclose(np.linalg.norm(features[:, :384], axis=1), 1.0, rtol=1e-4)


def test_cli_search_with_rerank(index: PhotoIndex, tiny_clip_config: Path, tiny_encoder: Encoder,
                                tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli import main

    monkeypatch.setenv("ENGINE_CHILD_FILTER", "off")
    reranker = _inverse_cosine(tmp_path / "rr", tiny_encoder, depth=3).artifact
    spec = f"open_clip:{tiny_clip_config}:random"
    code = main(["search", "--index", str(index.root), "--model", spec, "--rerank",
                 str(reranker), "a red photo", "-k", "3", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(payload["results"]) == 3
    code = main(["search", "--index", str(index.root), "--model", spec, "--rerank",
                 str(tmp_path / "nowhere"), "a red photo", "--json"])
    assert code == 2
    assert "re-ranker directory not found" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_RERANK", str(tmp_path / "from-the-setting"))
    code = main(["search", "--index", str(index.root), "--model", spec, "a red photo"])
    assert code == 2
    assert "from-the-setting" in capsys.readouterr().err
