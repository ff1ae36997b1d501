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

Some meanings live in word pairs, not words: "воздушный змей" is a kite, not an "air snake",
"на заднем плане" is "in the background". Lexicon rows whose Russian side has several words
are phrases, matched over the lemmas of consecutive words (every parse counts), longest first.
"с"/"со" before a genitive reads "from" ("прыгает со скамейки"), not "with".
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


def _grammemes(parse: Any) -> list[str]:
    return str(parse.tag).replace(" ", ",").split(",")


def _fold(word: str) -> str:
    return word.lower().replace("ё", "е")


_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "foot": "feet",
    "tooth": "teeth", "teeth": "teeth", "mouse": "mice", "goose": "geese", "sheep": "sheep",
    "fish": "fish",
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


def english_ing(verb: str) -> str:
    """The -ing form of a bare English verb ("catch" → "catching", "hit" → "hitting")."""
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    vowels = "aeiou"
    if (3 <= len(verb) <= 4 and verb[0] not in vowels and verb[-1] not in vowels + "wxy"
            and verb[-2] in vowels and verb[-3] not in vowels):
        return verb + verb[-1] + "ing"  # one short syllable: hit, cut, grab, stop
    return verb + "ing"


def _bare_verb(english: str) -> bool:
    """An English base-form verb the lexicon gives ("catch"), not "dressed" or "playing"."""
    return (english.isalpha() and not english.endswith(("ing", "ed", "s"))
            and english not in ("is", "have"))


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
    """Folded Russian lemma (or space-separated lemmas of a phrase) → English; within a file
    the first row wins, later files override."""
    lexicon: dict[str, str] = {}
    for path in paths:
        seen: set[str] = set()
        with path.open(encoding="utf-8", newline="") as handle:
            lines = (line for line in handle if line.strip() and not line.startswith("#"))
            for row in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
                ru, en = " ".join(_fold(row["ru"]).split()), row["en"].strip()
                if ru and en and ru not in seen:
                    seen.add(ru)
                    lexicon[ru] = en
    return lexicon


class RussianGlosser:
    """Turns Russian text into an English word sequence; thread-safe, caches per word."""

    def __init__(self, lexicon_paths: Sequence[Path] = (DEFAULT_LEXICON,)) -> None:
        entries = load_lexicon(lexicon_paths)
        self.lexicon = {ru: en for ru, en in entries.items() if " " not in ru}
        self.phrases = {tuple(ru.split()): en for ru, en in entries.items() if " " in ru}
        # Phrases by their first lemma, longest first: a query word looks at its own few.
        self._phrases_from: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for phrase, english in sorted(self.phrases.items(), key=lambda item: -len(item[0])):
            self._phrases_from.setdefault(phrase[0], []).append((phrase, english))
        self._cache: dict[str, GlossWord | None] = {}
        self._lemma_cache: dict[str, frozenset[str]] = {}
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
        # Most likely parse first; on a tie a noun comes last ("синей": синь or синий).
        parses = sorted(self._morph.parse(word.lower()),
                        key=lambda p: (-p.score, "NOUN" in p.tag))
        if folded in self.lexicon:  # a lemma itself: singular unless it only parses plural
            noun = any("NOUN" in p.tag for p in parses if _fold(p.normal_form) == folded)
            return GlossWord(self.lexicon[folded], noun=noun)
        for parse in parses:
            lemma = _fold(parse.normal_form)
            if lemma in self.lexicon:
                noun = "NOUN" in parse.tag
                english = self.lexicon[lemma]
                if ("GRND" in parse.tag or {"VERB", "pres"} <= set(_grammemes(parse))) and \
                        _bare_verb(english):
                    return GlossWord(english_ing(english))  # "ловит" → "catching"
                return GlossWord(self.lexicon[lemma], noun=noun,
                                 plural=noun and "plur" in parse.tag)
        if "-" in word:  # "коричнево-белый" → gloss the parts
            parts = [self._lookup(p, _fold(p)) for p in word.split("-") if p]
            found = [p for p in parts if p]
            return GlossWord(" ".join(p.english for p in found)) if found else None
        return None

    def lemmas(self, word: str) -> frozenset[str]:
        """Every folded lemma `word` may have (and the word itself), for phrase matching."""
        folded = _fold(word)
        with self._lock:
            if folded not in self._lemma_cache:
                found = {folded}
                if _CYRILLIC.search(word):
                    found.update(_fold(p.normal_form) for p in self._morph.parse(word.lower()))
                self._lemma_cache[folded] = frozenset(found)
            return self._lemma_cache[folded]

    def _phrase_at(self, tokens: Sequence[str], start: int) -> tuple[int, GlossWord] | None:
        """The longest lexicon phrase starting at `start`: (its length, its gloss)."""
        candidates = sorted((entry for lemma in self.lemmas(tokens[start])
                             for entry in self._phrases_from.get(lemma, ())),
                            key=lambda entry: -len(entry[0]))
        for phrase, english in candidates:
            size = len(phrase)
            if start + size <= len(tokens) and all(
                    word in self.lemmas(token)
                    for word, token in zip(phrase[1:], tokens[start + 1:start + size],
                                           strict=True)):
                return size, GlossWord(english, *self._phrase_number(
                    tokens[start:start + size], phrase[-1]))
        return None

    def _phrase_number(self, words: Sequence[str], head: str) -> tuple[bool, bool]:
        """(noun, plural) of a phrase: only a noun phrase ("белые медведи") takes the plural,
        read from the last word's likeliest parse as the phrase's `head` lemma ("змей": the
        kite, not the genitive plural of "змея"); a phrase that starts with a preposition or
        a verb ("позировать для фотографии") keeps the lexicon's English."""
        first = self._morph.parse(words[0].lower())[0]
        if {"PREP", "VERB", "INFN", "ADVB"} & set(_grammemes(first)):
            return False, False
        parses = [p for p in self._morph.parse(words[-1].lower())
                  if _fold(p.normal_form) == head] or self._morph.parse(words[-1].lower())
        last = max(parses, key=lambda p: p.score)
        noun = "NOUN" in last.tag
        return noun, noun and "plur" in last.tag

    def _reads_from(self, tokens: Sequence[str], at: int) -> bool:
        """"с"/"со" followed by a genitive means "from" ("со скамейки"), not "with"."""
        if _fold(tokens[at]) not in ("с", "со") or at + 1 >= len(tokens):
            return False
        following = tokens[at + 1]
        return bool(_CYRILLIC.search(following)) and "gent" in self._morph.parse(
            following.lower())[0].tag

    def gloss(self, text: str) -> str:
        """The English gloss of `text` (empty when no word is known)."""
        out: list[str] = []
        previous = ""
        tokens = _WORD.findall(text)
        at = 0
        while at < len(tokens):
            token = tokens[at]
            phrase = self._phrase_at(tokens, at) if self.phrases else None
            if phrase is not None:
                size, found_phrase = phrase
                at += size
                found: GlossWord | None = found_phrase
            else:
                at += 1
                found = self.lookup(token)
                if found is not None and self._reads_from(tokens, at - 1):
                    found = GlossWord("from")
            if found is None:
                continue
            if (phrase is None and _fold(token) in _SECOND_PREPOSITIONS
                    and previous.endswith((" to", " of"))):
                continue  # "рядом с" → "next to"
            english = found.text(after_count=previous in PLURAL_COUNTS or (
                previous.isdigit() and previous != "1"))
            out.append(english)
            previous = english
        return " ".join(out)
