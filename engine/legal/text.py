"""Text normalisation and tokenisation shared by the lexicon compiler and the query matcher.

Both sides of a match (lexicon entries and user text) go through the same functions, so a
lexicon author never has to think about case, ``ё``/``е``, curly apostrophes or hyphens: what
the tokeniser does to a query it also does to the lexicon line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "RawToken",
    "english_forms",
    "fold",
    "has_cyrillic",
    "is_cyrillic_word",
    "is_latin_word",
    "normalize",
    "script_variants",
    "tokenize",
]

# Apostrophe look-alikes people type (or phones substitute) in possessives: girl’s, kids`.
_APOSTROPHES = str.maketrans({c: "'" for c in "’‘`´ʼʹ′＇"})
# Accents are stripped ("gírl" -> "girl") except the breve of "й" and the diaeresis of "ё",
# which the Russian morphology needs ("дитё" is a child, "дите" a verb form).
_KEEP_MARKS = frozenset({"\u0306", "\u0308"})

# A token: a run of digits, or letters with inner apostrophes and an optional trailing one
# (possessive plural "kids'"). Hyphens, slashes and dots separate tokens, so "5-year-old",
# "pre-teen" and "3-х" become several tokens and the grammar above tokens puts them back.
_TOKEN_RE = re.compile(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)*'?")
_CYRILLIC_RE = re.compile(r"[а-яёіїєґ]", re.IGNORECASE)
_LATIN_RE = re.compile(r"[a-z]", re.IGNORECASE)

# Homoglyphs: letters that look the same in the other script. Mixed-script words
# ("gіrl" with a Cyrillic "і", "мaльчик" with a Latin "a") are a cheap way around word
# filters; such a word is also read with every look-alike swapped to the other script.
_CYR_TO_LAT = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "к": "k",
        "м": "m", "і": "i", "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d", "ӏ": "l", "ь": "b",
    }
)  # fmt: skip
_LAT_TO_CYR = str.maketrans(
    {
        "a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "y": "у", "x": "х", "k": "к",
        "m": "м", "b": "ь", "i": "і",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RawToken:
    """One word of normalised text; offsets index the normalised string (for messages)."""

    text: str
    start: int
    end: int


def normalize(text: str) -> str:
    """Fold the text so that matching ignores case, accents, apostrophe style and invisible
    characters (zero-width spaces and soft hyphens are a classic filter bypass). "ё" is kept
    for the morphology and folded later, in the match keys (see ``fold``)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    if text.isascii():
        return text
    kept: list[str] = []
    for ch in unicodedata.normalize("NFD", text):
        category = unicodedata.category(ch)
        if category == "Cf" or (category == "Mn" and ch not in _KEEP_MARKS):
            continue
        kept.append(ch)
    return unicodedata.normalize("NFC", "".join(kept))


def fold(word: str) -> str:
    """Match-key spelling: "ё" as "е" (most people type "е"). Applied to keys only, not
    before morphology: pymorphy3 reads "дите" as a verb, "дитё" as the child."""
    return word.replace("ё", "е")


def tokenize(normalized: str) -> list[RawToken]:
    """Split already-normalised text into tokens (see ``_TOKEN_RE`` for what a token is)."""
    return [RawToken(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(normalized)]


def has_cyrillic(text: str) -> bool:
    """True when the text contains at least one Cyrillic letter (the language rule)."""
    return _CYRILLIC_RE.search(text) is not None


def is_cyrillic_word(word: str) -> bool:
    """True for a word written only in Cyrillic letters (apostrophes aside)."""
    return _CYRILLIC_RE.search(word) is not None and _LATIN_RE.search(word) is None


def is_latin_word(word: str) -> bool:
    """True for a word with Latin letters and no Cyrillic ones."""
    return _LATIN_RE.search(word) is not None and _CYRILLIC_RE.search(word) is None


def script_variants(word: str) -> tuple[str, ...]:
    """The readings of a word: itself, or for a mixed-script word its all-Latin and
    all-Cyrillic look-alike spellings too (see ``_CYR_TO_LAT``)."""
    if _CYRILLIC_RE.search(word) is None or _LATIN_RE.search(word) is None:
        return (word,)
    return (word, word.translate(_CYR_TO_LAT), word.translate(_LAT_TO_CYR))


def _plural(word: str) -> str:
    """Regular English plural; irregular ones (children) are listed in the lexicon itself."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def english_forms(word: str) -> frozenset[str]:
    """The written forms an English lexicon word stands for: itself, its regular plural and
    the possessives of both ("kid" -> kid, kids, kid's, kids').

    An explicit list instead of a stemmer on purpose: Snowball maps "kidding" to "kid" and
    "youthful" to "youth", which is exactly the substring-style matching the filter must not
    do. Words with an apostrophe are already a specific form and are taken as written.
    """
    if "'" in word or not word.isalpha():
        return frozenset({word})
    forms: set[str] = set()
    for base in (word, _plural(word)):
        forms.add(base)
        forms.add(base + "'s")
        if base.endswith("s"):
            forms.add(base + "'")
    return frozenset(forms)
