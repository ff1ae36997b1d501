"""Round-trip glosses look like glossed Russian: base forms, lexicon words, no articles."""

from __future__ import annotations

from engine.encoders.gloss import RussianGlosser
from training.gloss_augment import RoundTripGlosser


def test_round_trip_drops_articles_and_normalises_forms() -> None:
    glosser = RoundTripGlosser()
    assert glosser.gloss("A dog runs on the beach .") == "dog running on beach"
    assert glosser.gloss("Two dogs") == "two dogs"  # as the glosser writes "две собаки"
    assert glosser.gloss("Three men") == "three men"
    assert glosser.gloss("The the a an") == ""


def test_round_trip_matches_the_gloss_of_a_translation() -> None:
    english = RoundTripGlosser().gloss("A man in a red jacket rides a bike")
    russian = RussianGlosser().gloss("Мужчина в красной куртке едет на велосипеде")
    assert set(english.split()) <= set(russian.split()) | {"rides"}
    assert english.split()[:4] == russian.split()[:4] == ["man", "in", "red", "jacket"]
