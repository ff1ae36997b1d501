"""Age expressions in English and Russian: "5-year-old", "a 3 year old", "aged 12", "under 10s",
"fifth grader", "12-летний", "пятилетний", "3-х летняя", "девочка 5 лет", "в возрасте 3 месяцев".

The law is about an age, not a word, so the lexicon cannot list every number. This module
finds the expressions on the token level (hyphens are already token separators, so
"5-year-old", "5 year old" and "5-year old" look alike) and reports the youngest age each one
denotes, in whole years; the filter compares that with the lexicon's ``%age-limit`` and turns a
refused expression into the ``<age>`` token that lexicon entries (and exceptions such as
``!<age> {animal}``) refer to. Months, weeks and days old count as age 0.

Bare "N years" is deliberately not an age in English (it is a duration); "N лет" is one in
Russian ("девочка 5 лет") and the Russian lexicon lists the duration contexts ("через 5 лет",
"5 лет назад") as exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["UNDER_LIMIT", "AgeSpan", "find_ages"]

# "under N" / "до N лет" means "ages 0..N-1"; it asks for minors when N is at most the age of
# majority. "people under 30" means young adults, so larger N is not read as an age range.
UNDER_LIMIT = 18
# School grades: a pupil in grade N is at least N + 5 (English systems; Russian first-graders
# are 6-7 too, so the same offset is used for both languages to keep them consistent).
GRADE_OFFSET = 5
_MAX_AGE = 150


@dataclass(frozen=True, slots=True)
class AgeSpan:
    """Tokens ``start`` (inclusive) to ``end`` (exclusive) express an age of ``years``."""

    start: int
    end: int
    years: int


# ---------------------------------------------------------------- English vocabulary
_EN_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "fiveteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_EN_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_EN_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20,
}  # fmt: skip
_EN_ORDINAL_SUFFIXES = frozenset({"st", "nd", "rd", "th"})
_EN_YEAR_UNITS = frozenset({"year", "years", "yr", "yrs", "y"})
_EN_BABY_UNITS = frozenset(
    {"month", "months", "mo", "mos", "mth", "mths", "week", "weeks", "wk", "wks", "day", "days"}
)
_EN_RANGE_WORDS = frozenset({"to", "or", "and"})
_EN_UNDER = frozenset({"under", "below"})
_EN_OLD = frozenset({"old", "olds", "old's"})

# ---------------------------------------------------------------- Russian vocabulary
_RU_NUMBERS = {
    "ноль": 0, "один": 1, "полтора": 1, "два": 2, "оба": 2, "три": 3, "четыре": 4, "пять": 5,
    "шесть": 6, "семь": 7, "восемь": 8, "девять": 9, "десять": 10, "одиннадцать": 11,
    "двенадцать": 12, "тринадцать": 13, "четырнадцать": 14, "пятнадцать": 15,
    "шестнадцать": 16, "семнадцать": 17, "восемнадцать": 18, "девятнадцать": 19,
    "двадцать": 20, "тридцать": 30, "сорок": 40, "пятьдесят": 50, "шестьдесят": 60,
    "семьдесят": 70, "восемьдесят": 80, "девяносто": 90, "сто": 100,
}  # fmt: skip
_RU_ORDINALS = {
    "первый": 1, "второй": 2, "третий": 3, "четвертый": 4, "пятый": 5, "шестой": 6,
    "седьмой": 7, "восьмой": 8, "девятый": 9, "десятый": 10, "одиннадцатый": 11,
    "двенадцатый": 12, "тринадцатый": 13, "четырнадцатый": 14, "пятнадцатый": 15,
    "шестнадцатый": 16, "семнадцатый": 17, "восемнадцатый": 18, "девятнадцатый": 19,
    "двадцатый": 20,
}  # fmt: skip
# Numeral stems that start compound adjectives: пяти|летний, двадцати|пяти|летний,
# перво|классник, полу|годовалый. Longest first so "семидесяти" is not read as "семи"+"десяти".
_RU_PREFIXES = {
    "полутора": 1, "полу": 0, "одно": 1, "дву": 2, "двух": 2, "трех": 3, "четырех": 4,
    "пяти": 5, "шести": 6, "семи": 7, "восьми": 8, "девяти": 9, "десяти": 10,
    "одиннадцати": 11, "двенадцати": 12, "тринадцати": 13, "четырнадцати": 14,
    "пятнадцати": 15, "шестнадцати": 16, "семнадцати": 17, "восемнадцати": 18,
    "девятнадцати": 19, "двадцати": 20, "тридцати": 30, "сорока": 40, "пятидесяти": 50,
    "шестидесяти": 60, "семидесяти": 70, "восьмидесяти": 80, "девяноста": 90,
    "девяносто": 90, "ста": 100, "сто": 100,
    # Ordinal stems used by "первоклассник" .. "четвероклассник".
    "перво": 1, "второ": 2, "третье": 3, "четверо": 4,
}  # fmt: skip
_RU_PREFIX_ALT = "|".join(sorted(_RU_PREFIXES, key=len, reverse=True))
_RU_PREFIX_RE = re.compile(_RU_PREFIX_ALT)
_RU_COMPOUND_RE = re.compile(rf"^((?:{_RU_PREFIX_ALT})*)(летн|летк|годовал|классни|клашк)")
# Case endings typed after digits: 3-х, 5-ти, 7-ми, 2-ух, 5-й, 5-го.
_RU_NUMBER_SUFFIXES = frozenset(
    {"х", "ти", "ми", "и", "ух", "ех", "ох", "й", "ый", "ий", "ой", "го", "ого", "его", "ть"}
)
_RU_YEAR_WORDS = frozenset(
    {
        "лет", "год", "года", "году", "годом", "годик", "годика", "годиков", "годиком",
        "годков", "годок", "годка", "годочек", "годочка", "годочков",
    }
)  # fmt: skip
_RU_BABY_UNIT_PREFIXES = ("месяц", "недел", "дн", "день")
_RU_UNDER = frozenset({"до", "младше", "моложе", "меньше"})
_RU_RANGE_WORDS = frozenset({"до", "или", "и"})
# Singular forms of "летний": a bare "3 летняя" is an age, a bare "3 летних платья" is
# "three summer dresses". With a hyphen or a case ending ("3-летние", "3-х летних") any form is.
_RU_LETNIY_SINGULAR = frozenset(
    {"летний", "летняя", "летнее", "летнего", "летней", "летнему", "летнюю", "летним",
     "летнем", "летнею"}
)  # fmt: skip

Lemmas = Callable[[str], frozenset[str]]


def _compound_value(prefixes: str) -> int:
    """Sum of the numeral stems in ``prefixes`` ("двадцатипяти" -> 25)."""
    return sum(_RU_PREFIXES[m.group()] for m in _RU_PREFIX_RE.finditer(prefixes))


class _Scanner:
    """The token-level grammar; one instance per text, cheap to build."""

    def __init__(self, words: Sequence[str], gaps: Sequence[str], lemmas: Lemmas) -> None:
        self.words = list(words)
        self.gaps = gaps  # gaps[i]: the characters between token i-1 and token i
        self.lemmas = lemmas
        self.n = len(words)

    def word(self, i: int) -> str:
        return self.words[i] if 0 <= i < self.n else ""

    def joined(self, i: int) -> bool:
        """Token i follows token i-1 with nothing or only a hyphen/dash between them."""
        if not 0 < i < self.n:
            return False
        gap = self.gaps[i]
        return gap == "" or gap.strip() in ("-", "–", "—")

    # ------------------------------------------------------------ numbers
    def en_number(self, i: int) -> tuple[int, int] | None:
        """A cardinal at token i: digits, "five", "twenty five"; returns (value, next)."""
        w = self.word(i)
        if w.isdigit():
            return (int(w), i + 1) if len(w) <= 3 else None
        if w in _EN_TENS:
            unit = _EN_UNITS.get(self.word(i + 1))
            if unit is not None and 0 < unit < 10:
                return _EN_TENS[w] + unit, i + 2
            return _EN_TENS[w], i + 1
        if w in _EN_UNITS:
            return _EN_UNITS[w], i + 1
        return None

    def ru_number(self, i: int) -> tuple[int, int] | None:
        """A cardinal at token i: digits (with an optional case ending "3-х") or a numeral
        in any case ("пяти", "двадцати пяти"); returns (value, next)."""
        w = self.word(i)
        if w.isdigit():
            if len(w) > 3:
                return None
            j = i + 1
            if self.word(j) in _RU_NUMBER_SUFFIXES and self.joined(j):
                j += 1
            return int(w), j
        value = self._ru_numeral(w)
        if value is None:
            return None
        nxt = self._ru_numeral(self.word(i + 1))
        if value >= 20 and value % 10 == 0 and nxt is not None and 0 < nxt < 10:
            return value + nxt, i + 2
        return value, i + 1

    def _ru_numeral(self, w: str) -> int | None:
        if not w or not w.isalpha():
            return None
        for lemma in self.lemmas(w):
            if lemma in _RU_NUMBERS:
                return _RU_NUMBERS[lemma]
        return None

    def number(self, i: int, ru: bool) -> tuple[int, int] | None:
        """A cardinal or a range of two ("3-5", "3 to 5", "5 или 6"); a range yields its
        lower end, which is what matters for a minimum age."""
        first = self.ru_number(i) if ru else self.en_number(i)
        if first is None:
            return None
        value, j = first
        range_words = _RU_RANGE_WORDS if ru else _EN_RANGE_WORDS
        k = j + 1 if self.word(j) in range_words else j
        if k == j and not (j < self.n and self.gaps[j].strip() in ("-", "–", "—")):
            return first
        second = self.ru_number(k) if ru else self.en_number(k)
        if second is None:
            return first
        return min(value, second[0]), second[1]

    # ------------------------------------------------------------ English rules
    def english_at(self, i: int) -> AgeSpan | None:
        w = self.word(i)
        # "aged 5", "age 5", "ages 3-5", "at the age of 5 months"
        if w in ("aged", "age", "ages"):
            j = i + 1 + (self.word(i + 1) == "of")
            num = self.number(j, ru=False)
            if num is not None:
                value, k = num
                unit = self.word(k)
                if unit in _EN_BABY_UNITS:
                    return AgeSpan(i, k + 1, 0)
                if unit in _EN_YEAR_UNITS:
                    k += 1
                return AgeSpan(i, k, value)
        # "under 10", "under the age of 12", "under-5s", "younger than 16"
        under = 1 if w in _EN_UNDER else 2 if (w, self.word(i + 1)) == ("younger", "than") else 0
        if under:
            j = i + under
            explicit = under == 2
            if self.words[j : j + 3] == ["the", "age", "of"]:
                j, explicit = j + 3, True
            num = self.number(j, ru=False)
            if num is not None:
                value, k = num
                unit = self.word(k)
                if unit in ("s", "yo") or unit in _EN_YEAR_UNITS:
                    explicit, k = True, k + 1
                    if self.word(k) in _EN_OLD:
                        k += 1
                if explicit:
                    return AgeSpan(i, k, 0 if value <= UNDER_LIMIT else value)
        # ordinals: "5th birthday", "fifth grader", "3rd-graders"
        ordinal: tuple[int, int] | None = None
        if w in _EN_ORDINALS:
            ordinal = _EN_ORDINALS[w], i + 1
        elif w.isdigit() and self.word(i + 1) in _EN_ORDINAL_SUFFIXES and self.joined(i + 1):
            ordinal = int(w), i + 2
        if ordinal is not None:
            value, k = ordinal
            nxt = self.word(k)
            if nxt in ("birthday", "birthdays", "birthday's"):
                return AgeSpan(i, k + 1, value)
            if nxt in ("grader", "graders", "grader's", "graders'"):
                return AgeSpan(i, k + 1, value + GRADE_OFFSET)
        # "5 year old", "5-year-old", "five year olds", "6 month old", "5 yo", "5 y/o",
        # "12 years of age"
        num = self.number(i, ru=False)
        if num is None:
            return None
        value, k = num
        unit = self.word(k)
        if unit == "yo" or (unit == "y" and self.word(k + 1) == "o"):
            return AgeSpan(i, k + (1 if unit == "yo" else 2), value)
        if unit in _EN_YEAR_UNITS or unit in _EN_BABY_UNITS:
            years = value if unit in _EN_YEAR_UNITS else 0
            if self.word(k + 1) in _EN_OLD:
                return AgeSpan(i, k + 2, years)
            if self.words[k + 1 : k + 3] == ["of", "age"]:
                return AgeSpan(i, k + 3, years)
        return None

    # ------------------------------------------------------------ Russian rules
    def russian_at(self, i: int) -> AgeSpan | None:
        w = self.word(i)
        # One word: "пятилетний", "двадцатипятилетняя", "трехлетка", "годовалый",
        # "первоклассник"; a word without a numeral stem ("летний") is not an age.
        m = _RU_COMPOUND_RE.match(w)
        if m is not None and (m.group(1) or m.group(2) == "годовал"):
            value = _compound_value(m.group(1))
            if m.group(2) == "годовал":
                value = value if m.group(1) else 1
            elif m.group(2) in ("классни", "клашк"):
                value += GRADE_OFFSET
            return AgeSpan(i, i + 1, value)
        # "в возрасте 5 лет", "в возрасте трех месяцев"
        if w == "возрасте" and self.word(i - 1) == "в":
            num = self.number(i + 1, ru=True)
            if num is not None:
                value, k = num
                unit = self.word(k)
                if unit.startswith(_RU_BABY_UNIT_PREFIXES):
                    return AgeSpan(i - 1, k + 1, 0)
                return AgeSpan(i - 1, k + 1 if unit in _RU_YEAR_WORDS else k, value)
        # "до 10 лет", "младше 12 лет"
        if w in _RU_UNDER:
            num = self.number(i + 1, ru=True)
            if num is not None and self.word(num[1]) in _RU_YEAR_WORDS:
                value, k = num
                return AgeSpan(i, k + 1, 0 if value <= UNDER_LIMIT else value)
        # "5-й день рождения", "пятый день рождения"
        ordinal = self._ru_ordinal(i)
        if ordinal is not None:
            value, k = ordinal
            if self.word(k).startswith(("день", "дня", "дне")) and self.word(k + 1) == "рождения":
                return AgeSpan(i, k + 2, value)
        num = self.number(i, ru=True)
        if num is None:
            return None
        value, k = num
        unit = self.word(k)
        had_suffix = k > i + 1 and self.words[i].isdigit()
        # "12-летний", "3-х летняя", "5 летний", "5-классник"
        if unit.startswith(("летн", "летк")):
            if (
                had_suffix
                or self.joined(k)
                or unit in _RU_LETNIY_SINGULAR
                or unit.startswith("летк")
            ):
                return AgeSpan(i, k + 1, value)
            return None
        if unit.startswith("классни") and (had_suffix or self.joined(k)):
            return AgeSpan(i, k + 1, value + GRADE_OFFSET)
        # "5 лет", "3 годика"
        if unit in _RU_YEAR_WORDS:
            return AgeSpan(i, k + 1, value)
        # "3 месяца от роду"
        if unit.startswith(_RU_BABY_UNIT_PREFIXES) and self.words[k + 1 : k + 3] == [
            "от",
            "роду",
        ]:
            return AgeSpan(i, k + 3, 0)
        return None

    def _ru_ordinal(self, i: int) -> tuple[int, int] | None:
        w = self.word(i)
        if w.isdigit() and len(w) <= 3:
            if self.word(i + 1) in _RU_NUMBER_SUFFIXES and self.joined(i + 1):
                return int(w), i + 2
            return None
        if not w.isalpha():
            return None
        for lemma in self.lemmas(w):
            if lemma in _RU_ORDINALS:
                return _RU_ORDINALS[lemma], i + 1
        return None


def find_ages(
    words: Sequence[str], gaps: Sequence[str], cyrillic: Sequence[bool], lemmas: Lemmas
) -> list[AgeSpan]:
    """All non-overlapping age expressions, left to right.

    ``words`` are normalised tokens, ``gaps[i]`` the text between tokens i-1 and i,
    ``cyrillic[i]`` whether token i is Russian (digits take the language of their neighbour)
    and ``lemmas`` gives the Russian lemmas of a word (for numerals in any case).
    """
    scanner = _Scanner(words, gaps, lemmas)
    spans: list[AgeSpan] = []
    i = 0
    while i < len(words):
        ru = cyrillic[i] or (words[i].isdigit() and _neighbour_is_cyrillic(cyrillic, i))
        span = scanner.russian_at(i) if ru else scanner.english_at(i)
        if span is None and ru and words[i].isdigit():
            span = scanner.english_at(i)
        if span is not None and span.years <= _MAX_AGE:
            spans.append(span)
            i = span.end
        else:
            i += 1
    return spans


def _neighbour_is_cyrillic(cyrillic: Sequence[bool], i: int) -> bool:
    """A digit token belongs to the language of the word after it ("5 лет", "5 years"), or
    failing that of the word before it."""
    if i + 1 < len(cyrillic):
        return cyrillic[i + 1]
    return i > 0 and cyrillic[i - 1]
