"""Messages: both languages have every key with the same placeholders; language choice."""

from __future__ import annotations

import pytest

from bot.i18n import MESSAGES, normalize_language, parse_language, placeholders, text


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    assert MESSAGES["en"].keys() == MESSAGES["ru"].keys()
    for key, template in MESSAGES["en"].items():
        assert placeholders(template) == placeholders(MESSAGES["ru"][key]), key


def test_every_message_formats() -> None:
    for language, messages in MESSAGES.items():
        for key, template in messages.items():
            values = {name: "1" for name in placeholders(template)}
            assert text(language, key, **values)


def test_missing_placeholder_is_a_programmer_error() -> None:
    with pytest.raises(KeyError):
        text("en", "error")


@pytest.mark.parametrize(
    ("code", "expected"),
    [("ru", "ru"), ("ru-RU", "ru"), ("RU_ru", "ru"), ("en", "en"), ("uk", "en"), (None, "en"),
     ("", "en")],
)
def test_normalize_language(code: str | None, expected: str) -> None:
    assert normalize_language(code) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("ru", "ru"), ("Русский", "ru"), (" english ", "en"), ("EN", "en"), ("de", None)],
)
def test_parse_language(word: str, expected: str | None) -> None:
    assert parse_language(word) == expected
