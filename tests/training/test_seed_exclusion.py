"""Legal exclusion rules, with stand-in checks (the real lexicon is tested in tests/engine)."""

from __future__ import annotations

import pandas as pd

from engine.legal import LegalFilter
from training.seed_study.exclusion import (
    apply_exclusion,
    caption_threshold_table,
    child_caption_counts,
    flagged_photos,
    restricted_queries,
)


def _mentions(text: str) -> bool:
    return "child" in text.split()


def test_restricted_queries_and_flagged_photos() -> None:
    assert restricted_queries({"q#0": "a child runs", "q#1": "a dog"}, _mentions) == {"q#0"}
    captions = {"a.jpg": ["a child", "a child on grass", "grass"], "b.jpg": ["a dog"]}
    counts = child_caption_counts(captions, ["a.jpg", "b.jpg", "c.jpg"], _mentions)
    assert counts == {"a.jpg": 2, "b.jpg": 0, "c.jpg": 0}
    assert flagged_photos(counts) == {"a.jpg"}
    assert flagged_photos(counts, min_captions=3) == set()
    assert caption_threshold_table(counts, 3) == [
        {"min_captions": 1, "photos": 1}, {"min_captions": 2, "photos": 1},
        {"min_captions": 3, "photos": 0}]


def test_apply_exclusion_counts_each_reason() -> None:
    pairs = pd.DataFrame({
        "image": ["a.jpg", "a.jpg", "b.jpg", "b.jpg", "c.jpg"],
        "query_id": ["q#0", "q#1", "q#0", "q#1", "q#1"],
        "source": ["expert", "crowd", "crowd", "expert", "crowd"],
        "target": [0.1, 0.2, 0.3, 0.4, 0.5]})
    result = apply_exclusion(pairs, restricted={"q#0"}, flagged={"a.jpg"})
    assert result.kept["image"].tolist() == ["b.jpg", "c.jpg"]
    summary = result.summary
    assert summary["pairs_restricted_query"] == 2
    assert summary["pairs_flagged_photo"] == 2
    assert summary["pairs_both_reasons"] == 1
    assert summary["pairs_dropped"] == 3 and summary["pairs_kept"] == 2
    assert summary["photos_flagged"] == 1 and summary["photos_kept"] == 2
    assert summary["expert_pairs_kept"] == 1 and summary["crowd_pairs_kept"] == 1


def test_the_engine_filter_reads_word_forms_not_substrings() -> None:
    legal = LegalFilter.default()
    checks = {"q#0": "Two boys play football", "q#1": "A man drinks from a kidney-shaped pool"}
    assert restricted_queries(checks, lambda t: not legal.check_query(t).allowed) == {"q#0"}
