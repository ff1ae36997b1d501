"""Telegram's `parse_mode` handling: formatted text in, plain text plus entities out.

Telegram never stores markup: it parses HTML or MarkdownV2 into plain text and a list of
MessageEntity objects (offsets and lengths in UTF-16 code units), and refuses malformed markup
with "Bad Request: can't parse entities: ...". Bots commonly break on exactly that (a user's
query with `<` or `.` pasted into a formatted reply), so the stand-in parses the way Telegram
does and fails the same way, instead of echoing the markup back. The parsers follow the rules
documented under "Formatting options" in the Bot API; the error texts are Telegram's. Leading
and trailing whitespace is trimmed afterwards, as Telegram does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Entity = dict[str, Any]

HTML_TAGS: dict[str, str] = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_TAG_NAME = re.compile(r"[A-Za-z0-9-]*")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z0-9_-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")


class EntityParseError(ValueError):
    """Malformed markup; str() is what follows "Bad Request: can't parse entities: "."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of `text[index]`, the unit of Telegram's parse error positions."""
    return len(text[:index].encode("utf-8"))


@dataclass
class _Builder:
    """Accumulates plain text and tracks the running UTF-16 position."""

    chars: list[str] = field(default_factory=list)
    position: int = 0

    def add(self, text: str) -> None:
        self.chars.append(text)
        self.position += utf16_len(text)

    def text(self) -> str:
        return "".join(self.chars)


@dataclass
class _Open:
    tag: str
    kind: str
    start: int
    source_index: int
    attributes: dict[str, str] = field(default_factory=dict)


def parse(
    text: str, parse_mode: str | None, entities: list[Entity] | None = None
) -> tuple[str, list[Entity]]:
    """Plain text and entities for `text` sent with `parse_mode` (or explicit `entities`)."""
    mode = (parse_mode or "").strip().lower()
    if not mode:
        return trim(text, list(entities or []))
    if mode == "html":
        return trim(*parse_html(text))
    if mode == "markdownv2":
        return trim(*parse_markdown_v2(text))
    if mode == "markdown":
        return trim(*parse_markdown_legacy(text))
    raise EntityParseError(f'Unsupported parse_mode "{parse_mode}"')


def trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Strip leading/trailing whitespace as Telegram does, moving and clipping entities."""
    stripped = text.strip()
    if stripped == text:
        return text, _sorted(entities)
    head = utf16_len(text[: len(text) - len(text.lstrip())])
    end = head + utf16_len(stripped)
    kept: list[Entity] = []
    for entity in entities:
        start = max(int(entity["offset"]), head)
        stop = min(int(entity["offset"]) + int(entity["length"]), end)
        if stop > start:
            kept.append({**entity, "offset": start - head, "length": stop - start})
    return stripped, _sorted(kept)


def _sorted(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (int(e["offset"]), -int(e["length"])))


def parse_html(text: str) -> tuple[str, list[Entity]]:
    """Telegram's HTML style: the tags and the four named character references it supports."""
    out = _Builder()
    stack: list[_Open] = []
    entities: list[Entity] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "&":
            decoded, consumed = _html_entity(text, index)
            out.add(decoded)
            index += consumed
            continue
        if char != "<":
            out.add(char)
            index += 1
            continue
        if text.startswith("</", index):
            index = _html_end_tag(text, index, stack, entities, out)
        else:
            index = _html_start_tag(text, index, stack, out)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    return out.text(), entities


def _html_entity(text: str, index: int) -> tuple[str, int]:
    """Decode `&name;`/`&#N;`/`&#xN;` at `index`; anything else stays a literal `&`."""
    match = re.match(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{1,10});", text[index:])
    if match:
        name = match.group(1)
        if name.startswith(("#x", "#X")):
            code = int(name[2:], 16)
        elif name.startswith("#"):
            code = int(name[1:])
        elif name in NAMED_ENTITIES:
            return NAMED_ENTITIES[name], match.end()
        else:
            return "&", 1
        if 0 < code <= 0x10FFFF:
            return chr(code), match.end()
    return "&", 1


def _html_start_tag(text: str, index: int, stack: list[_Open], out: _Builder) -> int:
    name_match = _TAG_NAME.match(text, index + 1)
    assert name_match is not None  # the pattern accepts the empty string
    name = name_match.group().lower()
    if name not in HTML_TAGS:
        raise EntityParseError(
            f'Unsupported start tag "{name}" at byte offset {byte_offset(text, index)}'
        )
    position = name_match.end()
    attributes: dict[str, str] = {}
    while True:
        if position >= len(text):
            raise EntityParseError(f"Unclosed start tag at byte offset {byte_offset(text, index)}")
        if text[position] == ">":
            break
        attribute = _ATTRIBUTE.match(text, position)
        if attribute is None or attribute.end() == position:
            raise EntityParseError(
                f'Unclosed start tag "{name}" at byte offset {byte_offset(text, index)}'
            )
        value = next((group for group in attribute.groups()[1:] if group is not None), "")
        attributes[attribute.group(1).lower()] = _unescape_attribute(value)
        position = attribute.end()
    if name == "span" and attributes.get("class") != "tg-spoiler":
        raise EntityParseError('Tag "span" must have class "tg-spoiler"')
    stack.append(_Open(name, HTML_TAGS[name], out.position, index, attributes))
    return position + 1


def _unescape_attribute(value: str) -> str:
    result: list[str] = []
    index = 0
    while index < len(value):
        if value[index] == "&":
            decoded, consumed = _html_entity(value, index)
            result.append(decoded)
            index += consumed
        else:
            result.append(value[index])
            index += 1
    return "".join(result)


def _html_end_tag(
    text: str, index: int, stack: list[_Open], entities: list[Entity], out: _Builder
) -> int:
    close = text.find(">", index)
    if close == -1:
        raise EntityParseError(f"Unclosed end tag at byte offset {byte_offset(text, index)}")
    name = text[index + 2 : close].strip().lower()
    if not stack:
        raise EntityParseError(f"Unexpected end tag at byte offset {byte_offset(text, index)}")
    opened = stack.pop()
    if name and name != opened.tag:
        raise EntityParseError(
            f"Unmatched end tag at byte offset {byte_offset(text, index)}, "
            f'expected "</{opened.tag}>", found "</{name}>"'
        )
    length = out.position - opened.start
    entity: Entity | None = {"type": opened.kind, "offset": opened.start, "length": length}
    assert entity is not None
    if opened.kind == "text_link":
        href = opened.attributes.get("href", "")
        entity = {**entity, "url": href} if href else None
    elif opened.kind == "code" and stack and stack[-1].kind == "pre":
        language = opened.attributes.get("class", "")
        if language.startswith("language-"):
            stack[-1].attributes["language"] = language.removeprefix("language-")
            entity = None
    elif opened.kind == "pre" and opened.attributes.get("language"):
        entity["language"] = opened.attributes["language"]
    elif opened.kind == "blockquote" and "expandable" in opened.attributes:
        entity["type"] = "expandable_blockquote"
    elif opened.kind == "custom_emoji":
        entity["custom_emoji_id"] = opened.attributes.get("emoji-id", "")
    if entity is not None and length > 0:
        entities.append(entity)
    return close + 1


_MARKDOWN_V2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "code": "Code",
    "pre": "Pre",
}


def parse_markdown_v2(text: str) -> tuple[str, list[Entity]]:
    """Telegram's MarkdownV2 style, including its rule that reserved characters be escaped."""
    out = _Builder()
    stack: list[_Open] = []
    entities: list[Entity] = []
    index = 0
    line_start = True
    quote: _Open | None = None
    while index < len(text):
        char = text[index]
        at_line_start = line_start
        line_start = char == "\n"
        if char == "\\" and index + 1 < len(text) and 0 < ord(text[index + 1]) <= 126:
            out.add(text[index + 1])
            index += 2
            continue
        if char == "\n" and quote is not None:
            _close_quote(quote, out, entities)
            quote = None
        if char == ">" and at_line_start:
            quote = _Open(">", "blockquote", out.position, index)
            index += 1
            continue
        if char == "`":
            index = _markdown_code(text, index, out, entities)
            continue
        toggled = _markdown_v2_toggle(text, index)
        if toggled is not None:
            kind, width = toggled
            _toggle(kind, text, index, stack, entities, out)
            index += width
            continue
        if char == "[":
            stack.append(_Open("[", "text_link", out.position, index))
            index += 1
            continue
        if char == "]" and any(opened.kind == "text_link" for opened in stack):
            index = _markdown_link_end(text, index, stack, entities, out)
            continue
        if char in MARKDOWN_V2_RESERVED:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        out.add(char)
        index += 1
    if quote is not None:
        _close_quote(quote, out, entities)
    if stack:
        opened = stack[-1]
        raise EntityParseError(
            f"Can't find end of {_MARKDOWN_V2_NAMES.get(opened.kind, opened.kind)} entity "
            f"at byte offset {byte_offset(text, opened.source_index)}"
        )
    return out.text(), _merge_quotes(entities)


def _markdown_v2_toggle(text: str, index: int) -> tuple[str, int] | None:
    char = text[index]
    following = text[index + 1] if index + 1 < len(text) else ""
    if char == "_":
        return ("underline", 2) if following == "_" else ("italic", 1)
    if char == "*":
        return ("bold", 1)
    if char == "~":
        return ("strikethrough", 1)
    if char == "|" and following == "|":
        return ("spoiler", 2)
    return None


def _toggle(
    kind: str, text: str, index: int, stack: list[_Open], entities: list[Entity], out: _Builder
) -> None:
    for position in range(len(stack) - 1, -1, -1):
        if stack[position].kind == kind:
            opened = stack.pop(position)
            if out.position > opened.start:
                entities.append(
                    {"type": kind, "offset": opened.start, "length": out.position - opened.start}
                )
            return
    stack.append(_Open(kind, kind, out.position, index))


def _close_quote(quote: _Open, out: _Builder, entities: list[Entity]) -> None:
    if out.position > quote.start:
        entities.append(
            {"type": "blockquote", "offset": quote.start, "length": out.position - quote.start}
        )


def _merge_quotes(entities: list[Entity]) -> list[Entity]:
    """Consecutive `>` lines form one blockquote, as in Telegram."""
    merged: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (int(e["offset"]), -int(e["length"]))):
        previous = next((e for e in reversed(merged) if e["type"] == "blockquote"), None)
        if (
            entity["type"] == "blockquote"
            and previous is not None
            and int(previous["offset"]) + int(previous["length"]) + 1 >= int(entity["offset"])
        ):
            previous["length"] = (
                int(entity["offset"]) + int(entity["length"]) - int(previous["offset"])
            )
            continue
        merged.append(entity)
    return merged


def _markdown_code(text: str, index: int, out: _Builder, entities: list[Entity]) -> int:
    """`code` or ```pre```: inside, only ` and \\ are special (and must be escaped)."""
    pre = text.startswith("```", index)
    fence = "```" if pre else "`"
    position = index + len(fence)
    language = ""
    if pre:
        newline = text.find("\n", position)
        first_line = text[position:newline] if newline != -1 else ""
        if newline != -1 and first_line and " " not in first_line and "`" not in first_line:
            language = first_line
            position = newline + 1
    start = out.position
    while position < len(text):
        if text[position] == "\\" and position + 1 < len(text):
            out.add(text[position + 1])
            position += 2
            continue
        if text.startswith(fence, position):
            length = out.position - start
            if length > 0:
                entity: Entity = {"type": "pre" if pre else "code", "offset": start}
                entity["length"] = length
                if language:
                    entity["language"] = language
                entities.append(entity)
            return position + len(fence)
        out.add(text[position])
        position += 1
    kind = "Pre" if pre else "Code"
    raise EntityParseError(
        f"Can't find end of {kind} entity at byte offset {byte_offset(text, index)}"
    )


def _markdown_link_end(
    text: str, index: int, stack: list[_Open], entities: list[Entity], out: _Builder
) -> int:
    position = max(i for i, opened in enumerate(stack) if opened.kind == "text_link")
    opened = stack.pop(position)
    if not text.startswith("(", index + 1):
        return index + 1
    url_chars: list[str] = []
    cursor = index + 2
    while cursor < len(text):
        char = text[cursor]
        if char == "\\" and cursor + 1 < len(text):
            url_chars.append(text[cursor + 1])
            cursor += 2
            continue
        if char == ")":
            if out.position > opened.start:
                entities.append(
                    {
                        "type": "text_link",
                        "offset": opened.start,
                        "length": out.position - opened.start,
                        "url": "".join(url_chars),
                    }
                )
            return cursor + 1
        url_chars.append(char)
        cursor += 1
    raise EntityParseError(f"Can't find end of a url at byte offset {byte_offset(text, index + 1)}")


def parse_markdown_legacy(text: str) -> tuple[str, list[Entity]]:
    """The legacy Markdown style: *bold*, _italic_, `code`, ```pre```, [text](url)."""
    out = _Builder()
    entities: list[Entity] = []
    index = 0
    kinds = {"*": "bold", "_": "italic"}
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "_*`[":
            out.add(text[index + 1])
            index += 2
            continue
        if char in kinds or char == "`":
            fence = "```" if text.startswith("```", index) else char
            end = text.find(fence, index + len(fence))
            if end == -1:
                raise EntityParseError(
                    "Can't find end of the entity starting at byte offset "
                    f"{byte_offset(text, index)}"
                )
            inner = text[index + len(fence) : end]
            start = out.position
            out.add(inner)
            kind = kinds.get(char) or ("pre" if fence == "```" else "code")
            if inner:
                entities.append({"type": kind, "offset": start, "length": utf16_len(inner)})
            index = end + len(fence)
            continue
        if char == "[":
            link = re.match(r"\[([^\]]*)\]\(([^)]*)\)", text[index:])
            if link is None:
                raise EntityParseError(
                    "Can't find end of the entity starting at byte offset "
                    f"{byte_offset(text, index)}"
                )
            start = out.position
            out.add(link.group(1))
            if link.group(1):
                entities.append(
                    {
                        "type": "text_link",
                        "offset": start,
                        "length": utf16_len(link.group(1)),
                        "url": link.group(2),
                    }
                )
            index += link.end()
            continue
        out.add(char)
        index += 1
    return out.text(), entities
