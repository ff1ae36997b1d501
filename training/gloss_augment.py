"""Gloss-style English for training: what a Russian query looks like after `RussianGlosser`.

A Russian query reaches MiniLM as a word-by-word gloss ("two dog running along beach on
sunset"): no articles, base forms, the lexicon's word choices. The heads never saw such text
in training. Round-tripping an English caption through the same lexicon (English word →
Russian lemma → the lexicon's English) produces text of exactly that kind from the TRAIN
captions themselves, so no Russian training text is needed. Plural nouns stay plural, as the
glosser writes them ("two dogs").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from engine.encoders.gloss import DEFAULT_LEXICON, english_plural, load_lexicon

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _inflections(word: str) -> Iterable[str]:
    """English forms a caption may use for a lexicon word (plural, 3rd person, bare verb)."""
    yield word
    yield word + "s"
    yield word + "es"
    if word.endswith("y"):
        yield word[:-1] + "ies"
    if word.endswith("ing") and len(word) > 5:
        stem = word[:-3]
        yield stem
        yield stem + "s"
        yield stem + "e"
        yield stem + "es"
        if len(stem) > 2 and stem[-1] == stem[-2]:
            yield stem[:-1]
            yield stem[:-1] + "s"


def _noun_translations(forward: dict[str, str]) -> set[str]:
    """English words the lexicon gives for Russian nouns (those the glosser may pluralise)."""
    import pymorphy3

    morph = pymorphy3.MorphAnalyzer()
    return {en for ru, en in forward.items() if "NOUN" in morph.parse(ru)[0].tag}


class RoundTripGlosser:
    """Maps English captions to the gloss a translation of them would produce."""

    def __init__(self, lexicon_path: Path = DEFAULT_LEXICON) -> None:
        forward = load_lexicon([lexicon_path])  # ru lemma → en (first sense)
        english = sorted(set(forward.values()))
        self.canonical: dict[str, str] = {}
        for noun in sorted(_noun_translations(forward)):
            if " " not in noun:
                self.canonical.setdefault(english_plural(noun), english_plural(noun))
        # Single words only: phrases ("in front of") are matched as their words' own entries.
        for word in english:
            if " " in word:
                continue
            for form in _inflections(word):
                self.canonical.setdefault(form, word)

    def gloss(self, caption: str) -> str:
        words = (self.canonical.get(token) for token in _TOKEN.findall(caption.lower()))
        return " ".join(w for w in words if w)
