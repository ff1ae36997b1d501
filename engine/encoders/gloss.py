"""Word-by-word English gloss of a Russian query, so English-only text towers can read it.

MiniLM, our strongest text tower, knows no Russian. A photo description is mostly content
words ("собака бежит по пляжу на закате"), and the bag of their English equivalents ("dog
running along beach on sunset") lands close to the English caption in MiniLM's space. Each
word is lemmatised with pymorphy3 (every parse is tried, most likely first) and looked up in a
hand-written lexicon built from the Flickr8k TRAIN vocabulary plus photography terms
(`lexicon/ru_en.tsv`). Admins can add lexicon files in the same format; later files win.
Words the lexicon lacks are dropped, Latin words and numbers are kept as they are.
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
DEFAULT_LEXICON = LEXICON_DIR / "ru_en.tsv"

_WORD = re.compile(r"[A-Za-zА-Яа-яЁё0-9]+(?:-[A-Za-zА-Яа-яЁё0-9]+)*")
_CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е")


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
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @cached_property
    def _morph(self) -> Any:
        import pymorphy3

        return pymorphy3.MorphAnalyzer()

    def word(self, word: str) -> str | None:
        """English for one token, or None when the lexicon has no entry for any reading."""
        folded = _fold(word)
        with self._lock:
            if folded in self._cache:
                return self._cache[folded]
            english = self._lookup(word, folded)
            self._cache[folded] = english
            return english

    def _lookup(self, word: str, folded: str) -> str | None:
        if not _CYRILLIC.search(word):
            return word.lower()  # numbers, brand names, "BMX"
        if folded in self.lexicon:
            return self.lexicon[folded]
        for parse in self._morph.parse(word.lower()):
            lemma = _fold(parse.normal_form)
            if lemma in self.lexicon:
                return self.lexicon[lemma]
        if "-" in word:  # "коричнево-белый" → gloss the parts
            parts = [self._lookup(p, _fold(p)) for p in word.split("-") if p]
            found = [p for p in parts if p]
            return " ".join(found) if found else None
        return None

    def gloss(self, text: str) -> str:
        """The English gloss of `text` (empty when no word is known)."""
        words = (self.word(token) for token in _WORD.findall(text))
        return " ".join(w for w in words if w)
