"""Reading lexicon files: the plain-text data that says which words make a query illegal.

The lexicon is data so that admins can extend it without a release (``LegalFilter.default``
takes extra files in the same format). The format is documented at the top of
``lexicon/en.txt``; in short, one entry a line, ``#`` starts a comment, and

    word                a term: any form of the word is refused
    word word           a phrase term: the words in a row, each in any form
    !word word          an exception: words covered by it never count as matches
    =form               (inside an entry) this written form only, no other forms
    {name}              (inside an entry) any member of the class ``name``
    <age>               (inside an entry) an age expression under the age limit
    @name = w, w, ...   defines (or extends) a word class
    %age-limit N        ages below N are refused (the largest value loaded wins)

This module only parses and validates; turning words into match keys needs the Russian
morphology and is done by the filter (see ``filter.py``), lazily.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.legal.text import is_cyrillic_word, is_latin_word, normalize, tokenize

__all__ = [
    "AGE_SPEC",
    "DEFAULT_AGE_LIMIT",
    "Entry",
    "Lexicon",
    "LexiconError",
    "lexicon_from_text",
    "load_lexicons",
    "parse_lexicon",
]

AGE_SPEC = "<age>"
# The customer's law: no images of children under 16.
DEFAULT_AGE_LIMIT = 16

_CLASS_REF_RE = re.compile(r"^\{([\w-]+)\}$")
_CLASS_DEF_RE = re.compile(r"^@([\w-]+)\s*=\s*(.*)$")
_DIRECTIVE_RE = re.compile(r"^%([\w-]+)\s+(.*)$")


class LexiconError(ValueError):
    """A lexicon file cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One term or exception line.

    ``elements`` are the specs the words of the line became: a plain normalised word,
    ``=form``, ``{class}`` or ``<age>``. ``source`` is the entry as written, shown in
    verdicts ("girl", "ребёнок", "baby {animal}"), ``origin`` where it came from ("en.txt:42").
    """

    elements: tuple[str, ...]
    exception: bool
    origin: str
    source: str

    @property
    def canonical(self) -> str:
        return ("!" if self.exception else "") + self.source


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Everything loaded from one or more files, merged and validated."""

    entries: tuple[Entry, ...]
    classes: Mapping[str, tuple[str, ...]]
    age_limit: int
    canonical_lines: tuple[str, ...]

    @property
    def terms(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if not e.exception)

    @property
    def exceptions(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.exception)


@dataclass(slots=True)
class _Parsed:
    entries: list[Entry]
    classes: dict[str, list[str]]
    age_limit: int | None


def _word_specs(chunk: str, where: str) -> list[str]:
    """The element specs one whitespace-separated chunk of an entry stands for."""
    if chunk == AGE_SPEC:
        return [AGE_SPEC]
    if _CLASS_REF_RE.match(chunk):
        return [chunk]
    exact = chunk.startswith("=")
    tokens = [t.text for t in tokenize(normalize(chunk[1:] if exact else chunk))]
    if not tokens:
        raise LexiconError(f"{where}: {chunk!r} has no letters or digits; remove it")
    for word in tokens:
        if not word.isdigit() and not (is_cyrillic_word(word) or is_latin_word(word)):
            raise LexiconError(
                f"{where}: {word!r} mixes Latin and Cyrillic letters; retype it in one script"
            )
    if exact:
        if len(tokens) != 1:
            raise LexiconError(
                f"{where}: {chunk!r}: '=' applies to one word; write each word as '=word'"
            )
        return ["=" + tokens[0]]
    return tokens


def _class_members(text: str, where: str) -> list[str]:
    members: list[str] = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            continue
        specs = _word_specs(raw, where)
        if len(specs) != 1 or specs[0] == AGE_SPEC or specs[0].startswith("{"):
            raise LexiconError(
                f"{where}: class member {raw!r} must be one word; "
                "put multi-word phrases in their own entries"
            )
        members.append(specs[0])
    return members


def parse_lexicon(text: str, origin: str = "<lexicon>") -> _Parsed:
    """Parse one file's text; raises ``LexiconError`` with ``origin:line`` on bad lines."""
    parsed = _Parsed(entries=[], classes={}, age_limit=None)
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{origin}:{number}"
        directive = _DIRECTIVE_RE.match(line)
        if directive is not None:
            name, value = directive.group(1), directive.group(2).strip()
            if name != "age-limit":
                raise LexiconError(
                    f"{where}: unknown directive %{name}; the only one is %age-limit"
                )
            if not value.isdigit() or not 0 < int(value) <= 150:
                raise LexiconError(f"{where}: %age-limit needs a whole number of years, 1..150")
            limit = int(value)
            parsed.age_limit = max(limit, parsed.age_limit or 0)
            continue
        class_def = _CLASS_DEF_RE.match(line)
        if class_def is not None:
            members = _class_members(class_def.group(2), where)
            if not members:
                raise LexiconError(f"{where}: class @{class_def.group(1)} lists no words")
            parsed.classes.setdefault(class_def.group(1), []).extend(members)
            continue
        if line.startswith(("@", "%")):
            raise LexiconError(
                f"{where}: cannot read {line!r}; write '@name = word, word' or '%age-limit N'"
            )
        exception = line.startswith("!")
        body = line[1:].strip() if exception else line
        elements: list[str] = []
        for chunk in body.split():
            elements.extend(_word_specs(chunk, where))
        if not elements:
            raise LexiconError(f"{where}: '!' needs the words of the exception after it")
        parsed.entries.append(Entry(tuple(elements), exception, where, " ".join(body.split())))
    return parsed


def _merge(parts: Iterable[_Parsed]) -> Lexicon:
    entries: list[Entry] = []
    classes: dict[str, list[str]] = {}
    limits: list[int] = []
    for part in parts:
        entries.extend(part.entries)
        for name, members in part.classes.items():
            classes.setdefault(name, []).extend(members)
        if part.age_limit is not None:
            limits.append(part.age_limit)
    for entry in entries:
        for element in entry.elements:
            ref = _CLASS_REF_RE.match(element)
            if ref is not None and ref.group(1) not in classes:
                raise LexiconError(
                    f"{entry.origin}: class {element} is not defined; add '@{ref.group(1)} = ...'"
                )
    frozen = {name: tuple(dict.fromkeys(members)) for name, members in classes.items()}
    # Canonical content for the fingerprint: what the matcher sees, not comments or order.
    canonical = {e.canonical for e in entries}
    canonical.update(f"@{name} = {', '.join(sorted(m))}" for name, m in frozen.items())
    age_limit = max(limits) if limits else DEFAULT_AGE_LIMIT
    canonical.add(f"%age-limit {age_limit}")
    return Lexicon(
        entries=tuple(entries),
        classes=frozen,
        age_limit=age_limit,
        canonical_lines=tuple(sorted(canonical)),
    )


def load_lexicons(paths: Sequence[Path]) -> Lexicon:
    """Read, parse and merge lexicon files (UTF-8). Classes defined in several files are
    merged; the strictest (largest) ``%age-limit`` wins, so an extension can only tighten."""
    parts: list[_Parsed] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise LexiconError(f"lexicon file {path} does not exist; check the path") from None
        except UnicodeDecodeError:
            raise LexiconError(f"lexicon file {path} is not UTF-8; save it as UTF-8") from None
        parts.append(parse_lexicon(text, origin=Path(path).name))
    return _merge(parts)


def lexicon_from_text(texts: Mapping[str, str]) -> Lexicon:
    """Parse and merge in-memory lexicons (name -> text); for tests and tools."""
    return _merge(parse_lexicon(text, origin=name) for name, text in texts.items())
