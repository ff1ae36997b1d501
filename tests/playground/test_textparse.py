"""parse_mode handling: plain text, UTF-16 entity offsets, and Telegram's parse errors."""

from __future__ import annotations

import pytest

from bot.playground.textparse import EntityParseError, parse, utf16_len


def spans(text: str, mode: str) -> tuple[str, list[tuple[str, int, int]]]:
    plain, entities = parse(text, mode)
    return plain, [(e["type"], e["offset"], e["length"]) for e in entities]


def test_html_nested_tags_links_and_references() -> None:
    plain, entities = parse(
        '<b>bold <i>both</i></b> <a href="https://x.org/?a=1&amp;b=2">link</a> &lt;3 &#128247;',
        "HTML",
    )
    assert plain == "bold both link <3 📷"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 9},
        {"type": "italic", "offset": 5, "length": 4},
        {"type": "text_link", "offset": 10, "length": 4, "url": "https://x.org/?a=1&b=2"},
    ]


def test_html_pre_with_language_and_spoiler() -> None:
    plain, entities = parse(
        '<pre><code class="language-python">x = 1</code></pre><span class="tg-spoiler">s</span>',
        "HTML",
    )
    assert plain == "x = 1s"
    assert entities == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"},
        {"type": "spoiler", "offset": 5, "length": 1},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a <div>b</div>", 'Unsupported start tag "div" at byte offset 2'),
        ("ё<b>x</i>", 'Unmatched end tag at byte offset 6, expected "</b>", found "</i>"'),
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler"'),
    ],
)
def test_html_errors(text: str, message: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse(text, "HTML")
    assert str(caught.value) == message


def test_markdown_v2_entities_and_escapes() -> None:
    assert spans(r"*bold* _it_ __under__ ~gone~ ||hidden|| 3\.5", "MarkdownV2") == (
        "bold it under gone hidden 3.5",
        [
            ("bold", 0, 4),
            ("italic", 5, 2),
            ("underline", 8, 5),
            ("strikethrough", 14, 4),
            ("spoiler", 19, 6),
        ],
    )
    plain, entities = parse(r"[site](https://x.org/a\)b) `a\`b` ```py" "\nprint()```", "MarkdownV2")
    assert plain == "site a`b print()"
    assert entities[0] == {
        "type": "text_link",
        "offset": 0,
        "length": 4,
        "url": "https://x.org/a)b",
    }
    assert entities[1] == {"type": "code", "offset": 5, "length": 3}
    assert entities[2] == {"type": "pre", "offset": 9, "length": 7, "language": "py"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Found 3 photos.",
            "Character '.' is reserved and must be escaped with the preceding '\\'",
        ),
        ("a-b", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("*bold", "Can't find end of Bold entity at byte offset 0"),
        ("ok `code", "Can't find end of Code entity at byte offset 3"),
    ],
)
def test_markdown_v2_errors(text: str, message: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse(text, "MarkdownV2")
    assert str(caught.value) == message


def test_markdown_v2_blockquote_lines_merge() -> None:
    assert spans(">one\n>two\nthree", "MarkdownV2") == ("one\ntwo\nthree", [("blockquote", 0, 7)])


def test_legacy_markdown() -> None:
    assert spans("*b* _i_ [l](http://x.org) 3.5", "Markdown") == (
        "b i l 3.5",
        [("bold", 0, 1), ("italic", 2, 1), ("text_link", 4, 1)],
    )
    with pytest.raises(EntityParseError, match="byte offset 2"):
        parse("a *b", "Markdown")


def test_whitespace_is_trimmed_and_entities_follow() -> None:
    plain, entities = parse("  <b> hi </b>\n", "HTML")
    assert plain == "hi"
    assert entities == [{"type": "bold", "offset": 0, "length": 2}]


def test_plain_text_keeps_explicit_entities() -> None:
    entities = [{"type": "bold", "offset": 0, "length": 2}]
    assert parse("🐶!", None, entities) == ("🐶!", entities)
    assert utf16_len("🐶!") == 3
