"""Language preferences survive a restart; a corrupt file is ignored, not fatal."""

from __future__ import annotations

from pathlib import Path

from bot.preferences import LanguagePreferences


def test_choices_persist(tmp_path: Path) -> None:
    path = tmp_path / "data" / "languages.json"
    prefs = LanguagePreferences(path)
    assert prefs.get(1) is None
    prefs.set(1, "ru")
    prefs.set(2**40, "en")
    again = LanguagePreferences(path)
    assert again.get(1) == "ru"
    assert again.get(2**40) == "en"
    assert not list(path.parent.glob(".*tmp"))


def test_corrupt_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "languages.json"
    path.write_text("{not json", encoding="utf-8")
    prefs = LanguagePreferences(path)
    assert prefs.get(1) is None
    prefs.set(1, "en")
    assert LanguagePreferences(path).get(1) == "en"


def test_unknown_values_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "languages.json"
    path.write_text('{"1": "de", "x": "ru", "2": "ru"}', encoding="utf-8")
    prefs = LanguagePreferences(path)
    assert prefs.get(1) is None and prefs.get(2) == "ru"
