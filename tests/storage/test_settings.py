"""BotSettings: exact environment names, ADMIN_IDS parsing, derived defaults, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import BotSettings, default_sqlite_url

ENV_NAMES = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE_URL",
    "TELEGRAM_API_FILE_URL",
    "ADMIN_IDS",
    "PHOTOS_DIR",
    "INDEX_DIR",
    "DATABASE_URL",
    "DATA_DIR",
    "MODEL",
    "RESULTS_PER_QUERY",
    "EXPORT_HASH_KEY",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = BotSettings()
    assert settings.telegram_bot_token is None
    assert settings.telegram_api_base_url == "https://api.telegram.org/bot"
    assert settings.telegram_api_file_url == "https://api.telegram.org/file/bot"
    assert settings.admin_ids == frozenset()
    assert settings.data_dir == Path("data")
    assert settings.database_url == "sqlite:///data/bot.sqlite3"
    assert settings.model == "dual:default"
    assert settings.results_per_query == 10
    assert settings.export_hash_key is None
    assert settings.export_key_path == Path("data/export_hash.key")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1, 2", {1, 2}), ("1,2,", {1, 2}), ("", set()), (" 42 ", {42}), ("[3, 4]", {3, 4})],
)
def test_admin_ids(monkeypatch: pytest.MonkeyPatch, raw: str, expected: set[int]) -> None:
    monkeypatch.setenv("ADMIN_IDS", raw)
    assert BotSettings().admin_ids == frozenset(expected)


def test_admin_ids_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_IDS", "1, bob")
    with pytest.raises(ValidationError):
        BotSettings()


def test_database_url_follows_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    settings = BotSettings()
    assert settings.database_url == default_sqlite_url(tmp_path / "d")
    assert settings.database_url == f"sqlite:///{tmp_path}/d/bot.sqlite3"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:pw@h/db")
    assert BotSettings().database_url == "postgresql+psycopg://u:pw@h/db"


def test_env_names_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "TELEGRAM_BOT_TOKEN=123:abc\nRESULTS_PER_QUERY=5\nUNRELATED=1\n", encoding="utf-8"
    )
    monkeypatch.setenv("MODEL", "clip:ViT-B-32")
    monkeypatch.setenv("PHOTOS_DIR", "/photos")
    monkeypatch.setenv("INDEX_DIR", "/index")
    monkeypatch.setenv("EXPORT_HASH_KEY", "k" * 32)
    settings = BotSettings()
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "123:abc"
    assert settings.results_per_query == 5
    assert settings.model == "clip:ViT-B-32"
    assert settings.photos_dir == Path("/photos")
    assert settings.index_dir == Path("/index")


def test_secrets_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:topsecret")
    monkeypatch.setenv("EXPORT_HASH_KEY", "hashsecret")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:dbsecret@h/db")
    shown = repr(BotSettings()) + str(BotSettings())
    for secret in ("topsecret", "hashsecret", "dbsecret"):
        assert secret not in shown


def test_results_per_query_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESULTS_PER_QUERY", "0")
    with pytest.raises(ValidationError):
        BotSettings()
