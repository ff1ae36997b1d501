"""Word-by-word English gloss of a Russian query, so English-only text towers can read it.

MiniLM, our strongest text tower, knows no Russian. A photo description is mostly content
words ("собака бежит по пляжу на закате"), and the bag of their English equivalents ("dog
running along beach on sunset") lands close to the English caption in MiniLM's space. Each
word is lemmatised with pymorphy3 (every parse is tried, most likely first) and looked up in a
hand-written lexicon built from the Flickr8k TRAIN vocabulary plus photography terms
(`lexicon/ru_en.tsv`). Admins can add lexicon files in the same format; later files win.
Words the lexicon lacks are dropped, Latin words and numbers are kept as they are.

Number survives the gloss: captions say "two dogs", and MiniLM reads "two dog" as a
slightly different sentence. A noun whose Russian form is plural ("собаки", "людей"), or that
follows a number ("три собаки", where Russian uses the genitive singular), is glossed in the
English plural ("dogs", "people"). Two-word Russian prepositions ("рядом с") are glossed
once ("next to", not "next to with").
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
DEFAULT_LEXICON = LEXICON_DIR / "ru_en.tsv"

_WORD = re.compile(r"[A-Za-zА-Яа-яЁё0-9]+(?:-[A-Za-zА-Яа-яЁё0-9]+)*")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е")


_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet",
    "tooth": "teeth", "mouse": "mice", "goose": "geese", "sheep": "sheep", "fish": "fish",
    "deer": "deer", "knife": "knives", "leaf": "leaves", "wolf": "wolves", "shelf": "shelves",
    "calf": "calves", "wife": "wives", "life": "lives", "ox": "oxen", "human": "humans",
    "people": "people", "police": "police", "equipment": "equipment", "hair": "hair",
    "water": "water", "snow": "snow", "sand": "sand", "grass": "grass", "mud": "mud",
}
# English words after which a count noun is plural ("two dogs", "several people").
PLURAL_COUNTS = frozenset({"two", "three", "four", "five", "six", "seven", "eight", "nine",
                           "ten", "both", "several", "many", "few", "dozen", "hundreds"})
# Russian prepositions that only complete the one before ("рядом с" = "next to").
_SECOND_PREPOSITIONS = frozenset({"с", "со", "от", "к", "ко"})


def english_plural(phrase: str) -> str:
    """The plural of an English noun or noun phrase (its last word is inflected)."""
    head, space, last = phrase.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif last.endswith("man") and len(last) > 4:  # fisherman, policeman
        plural = last[:-3] + "men"
    elif last.endswith("s") or last.endswith("ing") or not last.isalpha():
        plural = last  # already plural (shorts, jeans), a mass noun (clothing) or a number
    elif last.endswith(("x", "z", "ch", "sh")):
        plural = last + "es"
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return f"{head}{space}{plural}"


class GlossWord(NamedTuple):
    """One glossed token: its English, whether it is a noun, and whether it is plural."""

    english: str
    noun: bool = False
    plural: bool = False

    def text(self, after_count: bool) -> str:
        """The English as it reads in context (plural after "two", "several"...)."""
        return (english_plural(self.english) if self.noun and (self.plural or after_count)
                else self.english)


def load_lexicon(paths: Sequence[Path]) -> dict[str, str]:
    """Folded Russian lemma → English; within a file the first row wins, later files override."""
    lexicon: dict[str, str] = {}
    for path in paths:
        seen: set[str] = set()
        with path.open(encoding="utf-8", newline="") as handle:
            lines = (line for line in handle if line.strip() and not line.startswith("#"))
            for row in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
                ru, en = _fold(row["ru"].strip()), row["en"].strip()
                if ru and en and ru not in seen:
                    seen.add(ru)
                    lexicon[ru] = en
    return lexicon


class RussianGlosser:
    """Turns Russian text into an English word sequence; thread-safe, caches per word."""

    def __init__(self, lexicon_paths: Sequence[Path] = (DEFAULT_LEXICON,)) -> None:
        self.lexicon = load_lexicon(lexicon_paths)
        self._cache: dict[str, GlossWord | None] = {}
        self._lock = threading.Lock()

    @cached_property
    def _morph(self) -> Any:
        import pymorphy3

        return pymorphy3.MorphAnalyzer()

    def word(self, word: str) -> str | None:
        """English for one token out of context, or None when the lexicon has no entry for
        any reading."""
        found = self.lookup(word)
        return None if found is None else found.text(after_count=False)

    def lookup(self, word: str) -> GlossWord | None:
        """The glossed token (English, noun, plural), cached per word form."""
        folded = _fold(word)
        with self._lock:
            if folded in self._cache:
                return self._cache[folded]
            found = self._lookup(word, folded)
            self._cache[folded] = found
            return found

    def _lookup(self, word: str, folded: str) -> GlossWord | None:
        if not _CYRILLIC.search(word):
            return GlossWord(word.lower())  # numbers, brand names, "BMX"
        parses = self._morph.parse(word.lower())
        if folded in self.lexicon:  # a lemma itself: singular unless it only parses plural
            noun = any("NOUN" in p.tag for p in parses if _fold(p.normal_form) == folded)
            return GlossWord(self.lexicon[folded], noun=noun)
        for parse in parses:
            lemma = _fold(parse.normal_form)
            if lemma in self.lexicon:
                noun = "NOUN" in parse.tag
                return GlossWord(self.lexicon[lemma], noun=noun,
                                 plural=noun and "plur" in parse.tag)
        if "-" in word:  # "коричнево-белый" → gloss the parts
            parts = [self._lookup(p, _fold(p)) for p in word.split("-") if p]
            found = [p for p in parts if p]
            return GlossWord(" ".join(p.english for p in found)) if found else None
        return None

    def gloss(self, text: str) -> str:
        """The English gloss of `text` (empty when no word is known)."""
        out: list[str] = []
        previous = ""
        for token in _WORD.findall(text):
            found = self.lookup(token)
            if found is None:
                continue
            if _fold(token) in _SECOND_PREPOSITIONS and previous.endswith((" to", " of")):
                continue  # "рядом с" → "next to"
            english = found.text(after_count=previous in PLURAL_COUNTS or (
                previous.isdigit() and previous != "1"))
            out.append(english)
            previous = english
        return " ".join(out)
