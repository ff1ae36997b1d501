"""The legal query filter: refuses English and Russian queries that ask for children.

The customer operates where showing images of children under 16 without parental consent is
forbidden, so a search that asks for a child is answered with a disclaimer instead of photos.
The same rules run over photo captions (``mentions_children``) to make weak labels for the
photo-side flag.

Matching is by word form, never by substring: English words match their listed forms (plural
and possessives, see ``text.english_forms``), Russian words match by pymorphy3 lemma over all
parses of a word, and age expressions are recognised by a small grammar (``ages.py``). What
the words are is data: ``lexicon/en.txt`` and ``lexicon/ru.txt`` plus any admin extension.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.legal.ages import find_ages
from engine.legal.lexicon import AGE_SPEC, Entry, Lexicon, LexiconError, load_lexicons
from engine.legal.text import (
    english_forms,
    fold,
    has_cyrillic,
    is_cyrillic_word,
    normalize,
    script_variants,
    tokenize,
)

__all__ = [
    "DISCLAIMER_EN",
    "DISCLAIMER_RU",
    "LEXICON_DIR",
    "LegalFilter",
    "LexiconError",
    "QueryVerdict",
    "disclaimer",
]

log = logging.getLogger(__name__)

DISCLAIMER_EN = "This image is unavailable in your country in compliance with local legislation."
DISCLAIMER_RU = (
    "Это изображение недоступно в вашей стране в соответствии с местным законодательством."
)

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
_PACKAGED = ("en.txt", "ru.txt")

# Bumped when the matching rules in code change, so the fingerprint (logged with every search)
# tells apart two runs whose lexicon files are equal but whose behaviour is not.
_RULES_VERSION = "legal-rules-1"
_AGE_KEY = "<age>"
_ADULT_AGE_KEY = "<adult-age>"
_WORD_CACHE = 100_000


def disclaimer(language: str) -> str:
    """The refusal text for a user's language: Russian for "ru" (any region, e.g. "ru-RU",
    as Telegram language codes come), English for anything else."""
    return DISCLAIMER_RU if language.lower().split("-")[0] == "ru" else DISCLAIMER_EN


@dataclass(frozen=True)
class QueryVerdict:
    """The outcome of checking one text.

    ``language`` is "ru" when the text has any Cyrillic letter (the disclaimer language),
    ``matched`` the lexicon entries that fired (``<age>`` for an age expression) and
    ``reason`` a one-line explanation for logs and admins; both empty/None when allowed.
    """

    allowed: bool
    language: str
    matched: tuple[str, ...]
    reason: str | None


@dataclass(frozen=True, slots=True)
class _Token:
    text: str  # as it appears in the normalised query
    keys: frozenset[str]
    years: int | None  # set for an age expression


@dataclass(frozen=True, slots=True)
class _Pattern:
    entry: Entry
    elements: tuple[frozenset[str], ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    terms: tuple[_Pattern, ...]
    exceptions: tuple[_Pattern, ...]
    term_index: dict[str, tuple[int, ...]]
    exception_index: dict[str, tuple[int, ...]]


def _index(patterns: Sequence[_Pattern]) -> dict[str, tuple[int, ...]]:
    """First-element key -> patterns, so a token looks up only the patterns it can start."""
    index: dict[str, list[int]] = {}
    for number, pattern in enumerate(patterns):
        for key in pattern.elements[0]:
            index.setdefault(key, []).append(number)
    return {key: tuple(numbers) for key, numbers in index.items()}


class LegalFilter:
    """Checks queries (and captions) against the loaded lexicons.

    Construction parses and validates the files (so a broken admin file fails at startup);
    the Russian analyser is loaded and the lexicon compiled on first use, or by ``warm_up``.
    After that the object is read-only apart from thread-safe caches, so one instance serves
    all threads.
    """

    def __init__(self, lexicon: Lexicon) -> None:
        self._lexicon = lexicon
        digest = hashlib.sha256(_RULES_VERSION.encode())
        for line in lexicon.canonical_lines:
            digest.update(line.encode("utf-8") + b"\n")
        self._fingerprint = digest.hexdigest()[:12]
        # Separate locks: compiling the lexicon needs the analyser, which has its own lock.
        self._compile_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._morph_lock = threading.Lock()
        self._morph: Any = None
        self._compiled: _Compiled | None = None
        self._lemmas = functools.lru_cache(maxsize=_WORD_CACHE)(self._lemmas_uncached)
        self._word_keys = functools.lru_cache(maxsize=_WORD_CACHE)(self._word_keys_uncached)

    # ------------------------------------------------------------------ construction
    @classmethod
    def default(cls, extra_lexicons: Sequence[Path] = ()) -> LegalFilter:
        """The packaged English and Russian lexicons plus any admin extension files."""
        return cls.from_files([LEXICON_DIR / name for name in _PACKAGED] + list(extra_lexicons))

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> LegalFilter:
        """Exactly the given lexicon files; raises ``LexiconError`` for a bad file."""
        if not paths:
            raise ValueError("LegalFilter.from_files needs at least one lexicon file")
        return cls(load_lexicons(paths))

    @property
    def fingerprint(self) -> str:
        """Short stable hash of what the matcher uses (entries, classes, age limit, rules
        version); comments and line order do not change it. Logged with each search."""
        return self._fingerprint

    @property
    def lexicon(self) -> Lexicon:
        return self._lexicon

    @property
    def age_limit(self) -> int:
        return self._lexicon.age_limit

    def warm_up(self) -> None:
        """Load the Russian analyser and compile the lexicon now rather than on the first
        query (call at service start so no user waits for it)."""
        self._compile()
        self.check_query("warm up прогрев")

    # ------------------------------------------------------------------ checking
    def check_query(self, text: str) -> QueryVerdict:
        """Refuse the text when it asks for (mentions) a child; mixed-language text is fine,
        each word is read in its own script. Empty text is allowed (checked elsewhere)."""
        language = "ru" if has_cyrillic(text) else "en"
        hits = self._hits(text)
        if not hits:
            return QueryVerdict(allowed=True, language=language, matched=(), reason=None)
        matched = tuple(dict.fromkeys(entry.source for entry, _, _ in hits))
        return QueryVerdict(
            allowed=False, language=language, matched=matched, reason=self._reason(hits)
        )

    def mentions_children(self, text: str) -> bool:
        """Same rules as ``check_query``; for photo captions (weak labels for the flag)."""
        return bool(self._hits(text))

    def explain(self, text: str) -> list[tuple[str, str, str]]:
        """(entry, origin, matched text) for every hit; a debugging aid for lexicon authors."""
        return [(entry.source, entry.origin, surface) for entry, surface, _ in self._hits(text)]

    # ------------------------------------------------------------------ internals
    def _reason(self, hits: list[tuple[Entry, str, int | None]]) -> str:
        words: list[str] = []
        ages: list[str] = []
        for entry, surface, years in hits:
            if years is not None:
                ages.append(f"{surface!r} ({years})")
            else:
                words.append(f"{entry.source!r} ({surface})")
        parts: list[str] = []
        if words:
            parts.append("mentions children: " + ", ".join(dict.fromkeys(words)))
        if ages:
            parts.append(
                f"mentions an age under {self.age_limit}: " + ", ".join(dict.fromkeys(ages))
            )
        return "; ".join(parts)

    def _hits(self, text: str) -> list[tuple[Entry, str, int | None]]:
        """The term matches not covered by an exception: (entry, matched text, age)."""
        if not text or text.isspace():
            return []
        compiled = self._compile()
        tokens = self._tokens(text)
        covered: set[int] = set()
        for start, length in self._matches(tokens, compiled.exceptions, compiled.exception_index):
            covered.update(range(start, start + length))
        hits: list[tuple[Entry, str, int | None]] = []
        seen: set[tuple[int, int]] = set()
        for start, length, pattern in self._matches_with_pattern(
            tokens, compiled.terms, compiled.term_index
        ):
            span = range(start, start + length)
            # One report per stretch of text: "малышка" is both малышка and малышок.
            if covered.intersection(span) or (start, length) in seen:
                continue
            seen.add((start, length))
            years = next((tokens[i].years for i in span if tokens[i].years is not None), None)
            surface = " ".join(tokens[i].text for i in span)
            hits.append((pattern.entry, surface, years))
        return hits

    @staticmethod
    def _matches_with_pattern(
        tokens: Sequence[_Token], patterns: Sequence[_Pattern], index: dict[str, tuple[int, ...]]
    ) -> list[tuple[int, int, _Pattern]]:
        found: list[tuple[int, int, _Pattern]] = []
        for start, token in enumerate(tokens):
            candidates: set[int] = set()
            for key in token.keys:
                candidates.update(index.get(key, ()))
            for number in sorted(candidates):
                pattern = patterns[number]
                length = len(pattern.elements)
                if start + length > len(tokens):
                    continue
                if all(
                    not tokens[start + k].keys.isdisjoint(element)
                    for k, element in enumerate(pattern.elements)
                ):
                    found.append((start, length, pattern))
        return found

    def _matches(
        self,
        tokens: Sequence[_Token],
        patterns: Sequence[_Pattern],
        index: dict[str, tuple[int, ...]],
    ) -> list[tuple[int, int]]:
        return [(s, n) for s, n, _ in self._matches_with_pattern(tokens, patterns, index)]

    def _tokens(self, text: str) -> list[_Token]:
        normalized = normalize(text)
        raw = tokenize(normalized)
        words = [t.text for t in raw]
        gaps = [normalized[(raw[i - 1].end if i else 0) : t.start] for i, t in enumerate(raw)]
        cyrillic = [is_cyrillic_word(w) for w in words]
        tokens: list[_Token] = []
        i = 0
        folded = [fold(w) for w in words]
        for span in find_ages(folded, gaps, cyrillic, self._lemmas):
            tokens.extend(_Token(w, self._word_keys(w), None) for w in words[i : span.start])
            key = _AGE_KEY if span.years < self.age_limit else _ADULT_AGE_KEY
            surface = normalized[raw[span.start].start : raw[span.end - 1].end]
            tokens.append(_Token(surface, frozenset({key}), span.years))
            i = span.end
        tokens.extend(_Token(w, self._word_keys(w), None) for w in words[i:])
        return tokens

    def _word_keys_uncached(self, word: str) -> frozenset[str]:
        """Match keys of a query word: ``w:`` its written form (and without a trailing
        possessive apostrophe), ``l:`` each Russian lemma of each of its script readings."""
        keys: set[str] = set()
        for variant in script_variants(word):
            keys.add("w:" + fold(variant))
            if variant.endswith("'"):
                keys.add("w:" + fold(variant[:-1]))
            if is_cyrillic_word(variant):
                keys.update("l:" + lemma for lemma in self._lemmas(variant.replace("'", "")))
        return frozenset(keys)

    def _lemmas_uncached(self, word: str) -> frozenset[str]:
        """Normal forms of every pymorphy3 parse of a Russian word (ё folded to е).

        All parses, not only the likeliest: a query is too short to disambiguate, and a
        child reading we drop is a legal miss while an extra reading only matters when it
        is itself a lexicon word (the test suite checks the known homonyms)."""
        if not is_cyrillic_word(word):
            return frozenset()
        morph = self._analyzer()
        with self._morph_lock:
            parses = morph.parse(word)
        return frozenset(fold(str(p.normal_form)) for p in parses)

    def _analyzer(self) -> Any:
        morph = self._morph
        if morph is None:
            with self._load_lock:
                if self._morph is None:
                    import pymorphy3  # heavy: loaded on first use, not at import

                    self._morph = pymorphy3.MorphAnalyzer()
                morph = self._morph
        return morph

    def _compile(self) -> _Compiled:
        compiled = self._compiled
        if compiled is not None:
            return compiled
        with self._compile_lock:
            if self._compiled is None:
                self._compiled = self._build()
                log.info(
                    "legal filter ready: %d terms, %d exceptions, age limit %d, fingerprint %s",
                    len(self._compiled.terms),
                    len(self._compiled.exceptions),
                    self.age_limit,
                    self._fingerprint,
                )
            return self._compiled

    def _build(self) -> _Compiled:
        class_keys = {
            name: frozenset().union(*(self._spec_keys(m) for m in members))
            for name, members in self._lexicon.classes.items()
        }

        def element_keys(spec: str) -> frozenset[str]:
            if spec.startswith("{") and spec.endswith("}"):
                return class_keys[spec[1:-1]]
            return self._spec_keys(spec)

        terms: list[_Pattern] = []
        exceptions: list[_Pattern] = []
        for entry in self._lexicon.entries:
            pattern = _Pattern(entry, tuple(element_keys(s) for s in entry.elements))
            (exceptions if entry.exception else terms).append(pattern)
        return _Compiled(
            terms=tuple(terms),
            exceptions=tuple(exceptions),
            term_index=_index(terms),
            exception_index=_index(exceptions),
        )

    def _spec_keys(self, spec: str) -> frozenset[str]:
        """Keys a lexicon word spec accepts; mirrors ``_word_keys_uncached`` for queries."""
        if spec == AGE_SPEC:
            return frozenset({_AGE_KEY})
        if spec.startswith("="):
            return frozenset({"w:" + fold(spec[1:])})
        if is_cyrillic_word(spec):
            return frozenset("l:" + lemma for lemma in self._lemmas(spec))
        return frozenset("w:" + form for form in english_forms(spec))
