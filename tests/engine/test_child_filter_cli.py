"""`python -m engine index|search|reflag|moderate` with a child detector, run in-process.

`engine.cli.main(argv)` is what `python -m engine` runs; calling it here keeps the tests fast
(no interpreter and torch start per command). The tiny model is saved as a checkpoint so that
every command loads the same weights, and the detector is tied to that model's name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.child_filter import ChildDetector
from engine.cli import main
from engine.encoders import load_encoder
from engine.encoders.base import encode_images
from engine.index import PhotoIndex
from engine.moderation import moderation_path
from tests.engine.test_child_filter import single_out


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory, tiny_clip_config: Path) -> str:
    torch.manual_seed(0)
    encoder = load_encoder(f"open_clip:{tiny_clip_config}:random")
    checkpoint = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(encoder.model.state_dict(), checkpoint)  # type: ignore[attr-defined]
    return f"open_clip:{tiny_clip_config}:{checkpoint}"


@pytest.fixture()
def detector_dir(tiny_spec: str, photo_dir: Path, tmp_path: Path) -> Path:
    """A detector for the tiny model that flags red.jpg only."""
    encoder = load_encoder(tiny_spec)
    names = ["red.jpg", "green.png", "blue.webp", "trips/yellow.jpg", "trips/grey.JPG",
             "trips/white.jpeg"]
    embeddings = encode_images(encoder, [photo_dir / n for n in names])
    detector: ChildDetector = single_out(encoder.name, embeddings, [0])
    return detector.save(tmp_path / "detector", card="test\n", metrics={})


def _search(capsys: pytest.CaptureFixture[str], index: Path, *extra: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["search", "--index", str(index), "a photo", "-k", "6", "--json", *extra]) == 0
    payload: dict[str, object] = json.loads(capsys.readouterr().out)
    return payload


def _photos(payload: dict[str, object]) -> list[str]:
    results = payload["results"]
    assert isinstance(results, list)
    return [str(r["photo"]) for r in results]


def test_index_search_moderate_reflag(tiny_spec: str, detector_dir: Path, photo_dir: Path,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGINE_CHILD_DETECTOR", str(detector_dir))
    index = tmp_path / "idx"
    assert main(["index", str(photo_dir), "--index", str(index), "--model", tiny_spec,
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "child filter test-detector@1>=0.5000: 1 of 6 photos flagged" in out

    first = _search(capsys, index)
    assert {"query", "blocked", "message", "results"} <= set(first)
    assert len(_photos(first)) == 5 and "red.jpg" not in _photos(first)
    assert first["withheld"] == 1  # k=6 > 5 allowed: every flagged photo counts
    assert first["filter_version"] == json.loads(json.dumps(first))["filter_version"]
    assert "child=test-detector@1>=0.5000" in str(first["filter_version"])

    assert main(["moderate", "--index", str(index), "--allow", "red.jpg"]) == 0
    assert main(["moderate", "--index", str(index), "--block", str(photo_dir / "green.png"),
                 "--note", "reported"]) == 0
    out = capsys.readouterr().out
    assert "allowed red.jpg" in out and "blocked green.png" in out
    moderated = _search(capsys, index)
    assert "red.jpg" in _photos(moderated) and "green.png" not in _photos(moderated)
    assert moderated["withheld"] == 1 and moderated["filter_version"] != first["filter_version"]
    assert main(["moderate", "--index", str(index), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "allow  red.jpg" in listed and "block  green.png" in listed and "reported" in listed

    # A stricter threshold: re-flag (nothing re-embedded), the overrides still hold.
    monkeypatch.setenv("ENGINE_CHILD_THRESHOLD", "0")
    assert main(["reflag", "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "re-flagged: 6 of 6 photos flagged by test-detector@1>=0.0000" in out
    assert "5 newly flagged" in out
    strict = _search(capsys, index)
    assert _photos(strict) == ["red.jpg"] and strict["withheld"] == 5
    assert main(["reflag", "--index", str(index)]) == 0
    assert "already flagged by this filter" in capsys.readouterr().out

    assert main(["moderate", "--index", str(index), "--clear", "red.jpg"]) == 0
    assert _photos(_search(capsys, index)) == []

    # User-fixable problems exit 2 with one line.
    capsys.readouterr()
    assert main(["moderate", "--index", str(index), "--allow", "nowhere.jpg"]) == 2
    assert "not in the index" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_CHILD_DETECTOR", str(tmp_path / "missing"))
    assert main(["search", "--index", str(index), "a photo"]) == 2
    assert "train-child-detector" in capsys.readouterr().err
    monkeypatch.delenv("ENGINE_CHILD_DETECTOR")
    monkeypatch.setenv("ENGINE_CHILD_FILTER", "off")
    moderation_path(index).write_text("photo,decision\nred.jpg,perhaps\n", encoding="utf-8")
    assert main(["search", "--index", str(index), "a photo"]) == 2
    assert "decision must be allow or block" in capsys.readouterr().err


def test_a_detector_for_another_model_is_refused_by_name(
        tiny_spec: str, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = single_out("dual-default@9", np.eye(2, 32, dtype=np.float32), [0])
    monkeypatch.setenv("ENGINE_CHILD_DETECTOR", str(other.save(tmp_path / "d", card="",
                                                                   metrics={})))
    assert main(["index", str(photo_dir), "--index", str(tmp_path / "i"), "--model",
                 tiny_spec, "--quiet"]) == 2
    assert "trained for encoder 'dual-default@9'" in capsys.readouterr().err


def test_review_page_lists_hidden_photos_until_a_moderator_decides(
        tiny_spec: str, detector_dir: Path, photo_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGINE_CHILD_DETECTOR", str(detector_dir))
    monkeypatch.setenv("ENGINE_CHILD_THRESHOLD", "0")  # hides all, like photos unlike Flickr
    index = tmp_path / "idx"
    assert main(["index", str(photo_dir), "--index", str(index), "--model", tiny_spec,
                 "--quiet"]) == 0
    stored = PhotoIndex.open(index)
    assert stored.stored_scores is not None
    score = dict(zip(stored.paths, stored.stored_scores.tolist(), strict=True))
    least_certain_first = sorted(stored.paths, key=lambda p: (score[p], p))

    page = tmp_path / "review" / "page.html"
    capsys.readouterr()
    assert main(["moderate", "--index", str(index), "--review", str(page), "--limit", "4"]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 photos are hidden by test-detector@1>=0.0000 and await review" in out
    assert "This page shows 4." in out and str(page) in out
    html = page.read_text(encoding="utf-8")
    assert re.findall(r"value='([^']*)'", html) == least_certain_first[:4]
    assert html.count("<img src='data:image/jpeg;base64,") == 4

    # A decided photo leaves the page; the summary counts it.
    assert main(["moderate", "--index", str(index), "--allow", least_certain_first[0]]) == 0
    assert main(["moderate", "--index", str(index), "--block", least_certain_first[1]]) == 0
    capsys.readouterr()
    assert main(["moderate", "--index", str(index), "--review", str(page)]) == 0
    assert ("4 of 6 photos are hidden by test-detector@1>=0.0000 and await review (6 flagged; "
            "moderators allowed 1 and blocked 1 of them)") in capsys.readouterr().out
    assert re.findall(r"value='([^']*)'", page.read_text(encoding="utf-8")) == \
        least_certain_first[2:]

    # User-fixable problems exit 2 with one line, and leave the page as it was.
    before = page.read_text(encoding="utf-8")
    assert main(["moderate", "--index", str(index), "--review", str(page), "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err
    assert main(["moderate", "--index", str(tmp_path / "nowhere"), "--review", str(page)]) == 2
    assert "index directory does not exist" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_CHILD_FILTER", "off")
    assert main(["moderate", "--index", str(index), "--review", str(page)]) == 2
    assert "the child filter is off" in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == before
