"""Tests for the legal query filter (engine.legal).

The expected verdicts live in data files under ``data/legal`` written by hand from the
customer's rule (refuse what asks for a person under 16); nothing here derives an expected
value from the code under test.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.legal import (
    DISCLAIMER_EN,
    DISCLAIMER_RU,
    LEXICON_DIR,
    LegalFilter,
    LexiconError,
    QueryVerdict,
    disclaimer,
)
from engine.legal.lexicon import load_lexicons
from engine.legal.text import is_cyrillic_word

DATA = Path(__file__).parent / "data" / "legal"
MIN_PHRASES = 60


def _lines(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _pairs() -> list[tuple[str, str, str]]:
    rows = []
    for line in _lines("pairs.tsv"):
        english, russian, expected = line.split("\t")
        rows.append((english, russian, expected))
    return rows


@pytest.fixture(scope="module")
def legal() -> LegalFilter:
    return LegalFilter.default()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- phrase lists
@pytest.mark.parametrize("name", ["en_refused.txt", "en_allowed.txt", "ru_refused.txt",
                                  "ru_allowed.txt"])  # fmt: skip
def test_phrase_lists_are_large_enough(name: str) -> None:
    phrases = _lines(name)
    assert len(phrases) >= MIN_PHRASES
    assert len(set(phrases)) == len(phrases), "duplicate phrases"


@pytest.mark.parametrize("text", _lines("en_refused.txt") + _lines("ru_refused.txt"))
def test_refused(legal: LegalFilter, text: str) -> None:
    verdict = legal.check_query(text)
    assert not verdict.allowed, f"should be refused: {text!r}"
    assert verdict.matched
    assert verdict.reason
    assert legal.mentions_children(text)


@pytest.mark.parametrize("text", _lines("en_allowed.txt") + _lines("ru_allowed.txt"))
def test_allowed(legal: LegalFilter, text: str) -> None:
    verdict = legal.check_query(text)
    assert verdict.allowed, f"should be allowed: {text!r} ({verdict.reason})"
    assert verdict.matched == ()
    assert verdict.reason is None
    assert not legal.mentions_children(text)


@pytest.mark.parametrize(("english", "russian", "expected"), _pairs())
def test_caption_and_translation_get_the_same_verdict(
    legal: LegalFilter, english: str, russian: str, expected: str
) -> None:
    want = expected == "allowed"
    assert legal.check_query(english).allowed is want, english
    assert legal.check_query(russian).allowed is want, russian


# --------------------------------------------------------------------------- word forms
@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("girls", "girl"),
        ("a girl's hat", "girl"),
        ("the girls' team", "girl"),
        ("kids", "kid"),
        ("babies", "baby"),
        ("children's choir", "children"),
        ("детей", "ребёнок"),
        ("ребёнка", "ребёнок"),
        ("детьми", "ребёнок"),
        ("ребенку", "ребёнок"),
        ("мальчику", "мальчик"),
        ("девочкой", "девочка"),
        ("школьников", "школьник"),
        ("малышка", "малышка"),
        ("детишки", "детишки"),
        ("девчушка", "девчушка"),
        ("сыновья", "сын"),
        ("дочерей", "дочь"),
    ],
)
def test_matched_names_the_lexicon_entry(legal: LegalFilter, text: str, term: str) -> None:
    assert legal.check_query(text).matched == (term,)


def test_reason_quotes_entry_and_text(legal: LegalFilter) -> None:
    verdict = legal.check_query("three girls on a bench")
    assert verdict.reason == "mentions children: 'girl' (girls)"


def test_age_reason_and_boundary(legal: LegalFilter) -> None:
    refused = legal.check_query("15-year-old")
    assert refused.matched == ("<age>",)
    assert refused.reason == "mentions an age under 16: '15-year-old' (15)"
    assert legal.check_query("16-year-old").allowed
    assert not legal.check_query("15 лет").allowed
    assert legal.check_query("16 лет").allowed


@pytest.mark.parametrize(
    "text",
    [
        "5-year-old",
        "five-year-old",
        "a 3 year old",
        "two-year-olds",
        "twelve year old",
        "12 years of age",
        "aged 9",
        "4 yo",
        "4 y/o",
        "9 month old",
        "12-летний",
        "пятилетний",
        "3-х летняя",
        "трехлетка",
        "годовалый",
        "пяти лет",
        "в возрасте трёх месяцев",
    ],
)
def test_ages_under_the_limit(legal: LegalFilter, text: str) -> None:
    assert legal.check_query(text).matched == ("<age>",)


@pytest.mark.parametrize(
    "text",
    ["16-year-old", "sixteen year old", "a 30 year old man", "aged 40", "шестнадцатилетний",
     "30-летний", "20 лет", "двадцатипятилетняя"],
)  # fmt: skip
def test_ages_from_the_limit_up(legal: LegalFilter, text: str) -> None:
    assert legal.check_query(text).allowed


def test_case_accents_and_apostrophes_do_not_matter(legal: LegalFilter) -> None:
    for text in ["GIRL", "Gírl", "girl’s", "РЕБЁНОК", "ребенок"]:
        assert not legal.check_query(text).allowed, text


def test_invisible_characters_and_homoglyphs_do_not_hide_words(legal: LegalFilter) -> None:
    assert not legal.check_query("g\u200birl on a beach").allowed  # zero-width space
    assert not legal.check_query("chil\u00addren").allowed  # soft hyphen
    assert not legal.check_query("g\u0456rl").allowed  # Cyrillic "і" inside a Latin word
    assert not legal.check_query("м\u0061льчик").allowed  # Latin "a" inside a Russian word


@pytest.mark.parametrize(
    "text",
    ["почки", "ребята", "девчата", "дочерняя компания", "детище", "летний", "садик",
     "kidding", "kidney", "boyle", "kidman", "boycott", "sonnet", "infantry"],
)  # fmt: skip
def test_known_homonyms_are_not_children(legal: LegalFilter, text: str) -> None:
    assert legal.check_query(text).allowed


# --------------------------------------------------------------------------- language
def test_disclaimer_language() -> None:
    assert DISCLAIMER_EN == (
        "This image is unavailable in your country in compliance with local legislation."
    )
    assert DISCLAIMER_RU == (
        "Это изображение недоступно в вашей стране в соответствии с местным законодательством."
    )
    assert disclaimer("ru") == DISCLAIMER_RU
    assert disclaimer("ru-RU") == DISCLAIMER_RU
    assert disclaimer("RU") == DISCLAIMER_RU
    for other in ["en", "de", "uk", "", "rus-ish"]:
        assert disclaimer(other) == DISCLAIMER_EN


def test_verdict_language(legal: LegalFilter) -> None:
    assert legal.check_query("a girl").language == "en"
    assert legal.check_query("девочка").language == "ru"
    assert legal.check_query("sunset").language == "en"
    assert legal.check_query("закат").language == "ru"
    assert legal.check_query("girl на пляже").language == "ru"


def test_mixed_language_queries(legal: LegalFilter) -> None:
    assert legal.check_query("girl на пляже").matched == ("girl",)
    assert legal.check_query("девушка with a kid").matched == ("kid",)
    assert legal.check_query("kids и дети").matched == ("kid", "ребёнок")
    assert legal.check_query("девушка on the beach").allowed
    assert legal.check_query("young woman на пляже").allowed


def test_empty_text_is_allowed(legal: LegalFilter) -> None:
    for text in ["", "   ", "\n"]:
        assert legal.check_query(text) == QueryVerdict(
            allowed=True, language="en", matched=(), reason=None
        )
        assert not legal.mentions_children(text)


# --------------------------------------------------------------------------- captions
@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A child in a pink dress is climbing up a set of stairs in an entry way .", True),
        ("A little girl climbing into a wooden playhouse .", True),
        ("Two dogs of different breeds looking at each other on the road .", False),
        ("A man lays on a bench while his dog sits by him .", False),
        ("A birthday celebration taking place for a girl who has reached age 5 .", True),
        ("Two newborn puppies are being held by a pair of human hands .", False),
        ("A dog plays with a ball in a kiddie pool .", False),
        ("A young woman in a red sequined costume stands on the sidewalk .", False),
        ("A teenage boy is jumping on an inflatable slide .", True),
        ("Minor league pitcher", False),
        ("A man at a casino hugging two colorfully dressed show girls .", False),
    ],
)
def test_mentions_children_on_captions(legal: LegalFilter, caption: str, expected: bool) -> None:
    assert legal.mentions_children(caption) is expected


# --------------------------------------------------------------------------- lexicon data
def test_admin_lexicon_adds_a_term(tmp_path: Path) -> None:
    extra = _write(tmp_path, "extra.txt", "# admin additions\nbambino\nмалявка\n")
    before = LegalFilter.default()
    after = LegalFilter.default(extra_lexicons=[extra])
    assert before.check_query("bambino on a scooter").allowed
    assert after.check_query("bambino on a scooter").matched == ("bambino",)
    assert after.check_query("bambinos").matched == ("bambino",)  # forms, not just the word
    assert after.check_query("с малявками").matched == ("малявка",)
    assert not after.check_query("a girl").allowed  # the packaged terms are still there


def test_admin_lexicon_extends_a_class(tmp_path: Path) -> None:
    extra = _write(tmp_path, "extra.txt", "@animal = platypus\n")
    assert not LegalFilter.default().check_query("baby platypus").allowed
    assert LegalFilter.default(extra_lexicons=[extra]).check_query("baby platypus").allowed


def test_exceptions_win_over_terms(tmp_path: Path) -> None:
    lexicon = _write(tmp_path, "t.txt", "girl\nschool girl\n!girl scout\n!=girls' night\n")
    legal = LegalFilter.from_files([lexicon])
    assert legal.check_query("girl scout cookies").allowed
    assert legal.check_query("girl scouts").allowed  # exception words match by form too
    assert legal.check_query("girls' night").allowed
    assert legal.check_query("girls night").matched == ("girl",)  # "=" is that form only
    assert legal.check_query("a girl with girl scout cookies").matched == ("girl",)
    assert set(legal.check_query("school girl").matched) == {"girl", "school girl"}


def test_age_limit_directive_only_tightens(tmp_path: Path) -> None:
    stricter = _write(tmp_path, "strict.txt", "%age-limit 18\n")
    looser = _write(tmp_path, "loose.txt", "%age-limit 12\n")
    assert LegalFilter.default().check_query("17-year-old").allowed
    assert not LegalFilter.default([stricter]).check_query("17-year-old").allowed
    assert LegalFilter.default([stricter]).age_limit == 18
    assert not LegalFilter.default([looser]).check_query("14-year-old").allowed


def test_fingerprint(tmp_path: Path) -> None:
    base = LegalFilter.default().fingerprint
    assert base == LegalFilter.default().fingerprint
    assert len(base) == 12 and all(c in "0123456789abcdef" for c in base)
    first = _write(tmp_path, "a.txt", "bambino\n")
    second = _write(tmp_path, "b.txt", "# only a comment differs\nbambino   # same entry\n")
    third = _write(tmp_path, "c.txt", "bambina\n")
    with_first = LegalFilter.default([first]).fingerprint
    assert with_first != base
    assert LegalFilter.default([second]).fingerprint == with_first
    assert LegalFilter.default([third]).fingerprint not in (base, with_first)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("baby {unicorn}\n", "not defined"),
        ("%max-age 15\n", "unknown directive"),
        ("%age-limit old\n", "whole number"),
        ("@empty =\n", "lists no words"),
        ("!\n", "needs the words"),
        ("gіrl\n", "mixes Latin and Cyrillic"),
        ("=pin-up\n", "'=' applies to one word"),
    ],
)
def test_bad_lexicon_lines_are_reported(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(LexiconError, match=message) as caught:
        LegalFilter.from_files([path])
    assert "bad.txt:1" in str(caught.value)


def test_missing_lexicon_file(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="does not exist"):
        LegalFilter.default(extra_lexicons=[tmp_path / "nope.txt"])


def test_packaged_lexicons_parse_and_cover_ages() -> None:
    for name in ["en.txt", "ru.txt"]:
        lexicon = load_lexicons([LEXICON_DIR / name])
        assert lexicon.age_limit == 16
        assert any(entry.elements == ("<age>",) for entry in lexicon.terms), name
        assert len(lexicon.terms) > 50


def test_russian_lexicon_words_are_dictionary_words(legal: LegalFilter) -> None:
    """A typo in ru.txt would silently match nothing; words pymorphy3 does not know are
    listed here on purpose (it predicts their lemma, which is then the word itself)."""
    predicted = {"автокресло", "герлскаут", "детсадовец", "дитё", "дите", "младшеклассник",
                 "младшеклассница", "мобиль", "радионяня", "тинэйджер"}  # fmt: skip
    morph = legal._analyzer()
    lexicon = legal.lexicon
    words = {spec.lstrip("=") for entry in lexicon.entries for spec in entry.elements}
    words.update(m.lstrip("=") for members in lexicon.classes.values() for m in members)
    words = {w for w in words if is_cyrillic_word(w) and not w.startswith("{")}
    unknown = {w for w in words if not morph.word_is_known(w)}
    assert unknown == predicted


def test_import_does_not_load_the_morphology() -> None:
    """pymorphy3 costs ~0.1 s and memory; importing the package must not load it."""
    code = "import sys, engine.legal; print('pymorphy3' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- performance
def _queries() -> Iterator[str]:
    yield from _lines("en_refused.txt") + _lines("en_allowed.txt")
    yield from _lines("ru_refused.txt") + _lines("ru_allowed.txt")


def test_fast_after_warm_up() -> None:
    legal = LegalFilter.default()
    legal.warm_up()
    queries = list(_queries())
    for text in queries:  # fill the word caches, as a running service would have
        legal.check_query(text)
    rounds = 5
    start = time.perf_counter()
    for _ in range(rounds):
        for text in queries:
            legal.check_query(text)
    per_query = (time.perf_counter() - start) / (rounds * len(queries))
    assert per_query < 0.001, f"{per_query * 1e6:.0f} us per query"


def test_thread_safe_from_a_cold_start() -> None:
    queries = list(_queries())
    reference = LegalFilter.default()
    expected = [reference.check_query(q) for q in queries]
    legal = LegalFilter.default()  # cold: analyser and lexicon load under contention
    results: dict[int, list[QueryVerdict]] = {}
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        results[worker] = [legal.check_query(q) for q in queries]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == expected for n in range(8))
