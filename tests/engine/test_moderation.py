"""Moderation overrides: the CSV, precedence (block > allow > flag), and their lifetime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.child_filter import ChildFilter
from engine.encoders.base import Encoder
from engine.index import PhotoIndex, reflag_index, update_index
from engine.legal import LegalFilter
from engine.moderation import (
    ModerationError,
    Override,
    Overrides,
    apply_overrides,
    format_overrides,
    moderation_path,
    normalize_photo,
    parse_overrides,
    read_overrides,
    review_queue,
    set_decision,
)
from engine.search import SearchEngine
from tests.engine.conftest import make_photo
from tests.engine.test_child_filter import single_out

PATHS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
SIGS = {p: (100 + i, 1000 + i) for i, p in enumerate(PATHS)}


def _exclusion(flags: list[bool], *items: Override) -> list[bool]:
    mask: list[bool] = apply_overrides(np.array(flags), PATHS, SIGS,
                                       Overrides(items)).mask.tolist()
    return mask


# ---------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("flagged", "decisions", "hidden"),
    [
        (False, (), False),              # detector says no
        (True, (), True),                # detector flag
        (True, ("allow",), False),       # allow beats the flag
        (False, ("block",), True),       # block beats "not flagged"
        (True, ("block",), True),
        (True, ("allow", "block"), True),  # block beats allow (a hand-edited file)
        (False, ("block", "allow"), True),
    ],
)
def test_precedence_block_then_allow_then_flag(flagged: bool, decisions: tuple[str, ...],
                                               hidden: bool) -> None:
    items = [Override("c.jpg", d, *SIGS["c.jpg"]) for d in decisions]  # type: ignore[arg-type]
    mask = _exclusion([False, False, flagged, False, True], *items)
    assert mask == [False, False, hidden, False, True]


def test_exclusion_counts() -> None:
    result = apply_overrides(np.array([True, True, False, False, False]), PATHS, SIGS, Overrides((
        Override("a.jpg", "allow", *SIGS["a.jpg"]), Override("c.jpg", "block"),
        Override("zzz.jpg", "block"))))  # not in the index: nothing to hide
    assert result.mask.tolist() == [False, True, True, False, False]
    assert (result.flagged, result.blocked, result.allowed, result.excluded) == (2, 1, 1, 2)


def test_an_allow_lapses_when_the_file_changes_a_block_never_does() -> None:
    changed = Override("b.jpg", "allow", 999, 1)  # recorded for another version of the file
    assert _exclusion([False, True, False, False, False], changed)[1] is True
    unsigned = Override("b.jpg", "allow")  # a hand-written line: holds for any content
    assert _exclusion([False, True, False, False, False], unsigned)[1] is False
    assert _exclusion([False] * 5, Override("b.jpg", "block", 999, 1))[1] is True


# ------------------------------------------------------------------------------ the file


def test_review_queue_lists_undecided_flagged_photos_least_certain_first() -> None:
    scores = np.array([0.9, 0.2, 0.6, 0.05, 0.4], dtype=np.float32)
    flags = scores >= 0.3  # a, c, e flagged; b and d shown anyway
    queue = review_queue(scores, flags, PATHS, SIGS, Overrides())
    assert [(i.photo, round(i.score, 2)) for i in queue.pending] == [
        ("e.jpg", 0.4), ("c.jpg", 0.6), ("a.jpg", 0.9)]
    assert (queue.flagged, queue.allowed, queue.blocked) == (3, 0, 0)

    decided = Overrides((Override("a.jpg", "allow", *SIGS["a.jpg"]),  # holds: decided
                         Override("c.jpg", "block"),
                         Override("e.jpg", "allow", 1, 2),  # file changed since: due again
                         Override("b.jpg", "block")))  # not flagged: not counted
    queue = review_queue(scores, flags, PATHS, SIGS, decided)
    assert [i.photo for i in queue.pending] == ["e.jpg"]
    assert (queue.flagged, queue.allowed, queue.blocked) == (3, 1, 1)


def test_review_queue_breaks_score_ties_by_path() -> None:
    scores = np.full(5, 0.5, dtype=np.float32)
    queue = review_queue(scores, np.ones(5, dtype=bool), PATHS[::-1], SIGS, Overrides())
    assert [i.photo for i in queue.pending] == PATHS


def test_csv_round_trip_and_errors() -> None:
    text = ("photo,decision,size,mtime_ns,updated,note\n"
            "trips/x.jpg,BLOCK,,,2026-01-01T00:00:00+00:00,\"reported, twice\"\n"
            "./y.jpg,allow,10,20,,\n")
    overrides = parse_overrides(text)
    assert overrides.items == (
        Override("trips/x.jpg", "block", None, None, "2026-01-01T00:00:00+00:00",
                 "reported, twice"),
        Override("y.jpg", "allow", 10, 20, "", ""))
    assert parse_overrides(format_overrides(overrides)) == overrides
    assert parse_overrides("photo,decision\n") == Overrides()
    assert overrides.fingerprint != Overrides().fingerprint == "none"
    with pytest.raises(ModerationError, match="line 3: decision must be allow or block"):
        parse_overrides("photo,decision\na.jpg,block\nb.jpg,hide\n")
    with pytest.raises(ModerationError, match="line 2"):
        parse_overrides("photo,decision,size\na.jpg,allow,big\n")
    with pytest.raises(ModerationError, match="missing decision"):
        parse_overrides("photo,verdict\na.jpg,block\n")
    with pytest.raises(ModerationError, match="relative"):
        normalize_photo("../etc/passwd")


def test_set_decision_replaces_the_photo_line(tmp_path: Path) -> None:
    set_decision(tmp_path, "a.jpg", "block", note="user report")
    set_decision(tmp_path, "b.jpg", "allow", signature=(5, 6))
    after = set_decision(tmp_path, "a.jpg", "allow", signature=(7, 8))
    assert [(o.photo, o.decision, o.size, o.mtime_ns) for o in after.items] == [
        ("a.jpg", "allow", 7, 8), ("b.jpg", "allow", 5, 6)]
    cleared = set_decision(tmp_path, "b.jpg", None)
    assert [o.photo for o in cleared.items] == ["a.jpg"] == [
        o.photo for o in read_overrides(tmp_path).items]
    blocked = set_decision(tmp_path, "c.jpg", "block", signature=(1, 2))
    assert blocked.items[-1].size is None  # a block is not bound to the file's content


# ----------------------------------------------------------- with an index and a search


@pytest.fixture(scope="module")
def legal() -> LegalFilter:
    return LegalFilter.default()


def test_overrides_survive_reindexing_and_reflagging(
        tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path, legal: LegalFilter) -> None:
    root = tmp_path / "idx"
    update_index(photo_dir, root, tiny_encoder, progress=False)
    index = PhotoIndex.open(root)
    red, grey = index.row("red.jpg"), index.row("trips/grey.JPG")
    assert red is not None and grey is not None
    child_filter = ChildFilter.of(single_out(tiny_encoder.name, np.asarray(index.embeddings),
                                             [red, grey]))
    update_index(photo_dir, root, tiny_encoder, progress=False, child_filter=child_filter)
    signatures = PhotoIndex.open(root).signatures()
    set_decision(root, "red.jpg", "allow", signature=signatures["red.jpg"])  # false positive
    set_decision(root, "green.png", "block")  # missed by the detector

    def shown() -> set[str]:
        engine = SearchEngine(tiny_encoder, PhotoIndex.open(root), legal, child_filter)
        return {h.photo for h in engine.search("a photo", k=10).hits}

    expected = {"red.jpg", "blue.webp", "trips/yellow.jpg", "trips/white.jpeg"}
    assert shown() == expected
    make_photo(photo_dir / "trips" / "new.jpg", (90, 10, 200))  # re-index with a change
    update_index(photo_dir, root, tiny_encoder, progress=False, child_filter=child_filter)
    reflag_index(root, ChildFilter.of(child_filter.detector, 0.4)  # type: ignore[arg-type]
                 )
    assert len(list(root.glob("gen-*"))) == 1
    assert moderation_path(root).is_file()
    assert shown() == expected | {"trips/new.jpg"}

    # Another picture under the allowed name: the allow lapses, the detector decides again.
    red_path = photo_dir / "red.jpg"
    make_photo(red_path, (221, 30, 30), size=(66, 48))
    os.utime(red_path, ns=(1, 1))
    update_index(photo_dir, root, tiny_encoder, progress=False, child_filter=child_filter)
    index = PhotoIndex.open(root)
    assert index.child_scores(child_filter)[index.row("red.jpg") or 0] >= 0.5  # still flagged
    assert "red.jpg" not in shown()


def test_a_running_engine_sees_a_new_block_at_once(
        tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path, legal: LegalFilter,
        caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "idx"
    update_index(photo_dir, root, tiny_encoder, progress=False)
    engine = SearchEngine(tiny_encoder, PhotoIndex.open(root), legal, ChildFilter.off())
    top = engine.search("a photo", k=1).hits[0].photo
    before = engine.filter_version
    set_decision(root, top, "block")
    result = engine.search("a photo", k=1)
    assert result.hits[0].photo != top and result.withheld == 1
    assert result.filter_version != before and "child=off" in result.filter_version
    # A broken hand edit keeps the blocks in force (and says so in the log).
    moderation_path(root).write_text("photo,decision\nx.jpg,maybe\n", encoding="utf-8")
    assert engine.search("a photo", k=1).hits[0].photo != top
    assert "cannot be used" in caplog.text
    with pytest.raises(ModerationError):  # a fresh engine refuses to start on it
        SearchEngine(tiny_encoder, PhotoIndex.open(root), legal, ChildFilter.off())
