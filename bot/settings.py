"""Settings of the bot, its storage and its admin commands, read from the environment.

One class, built once in `main()` and passed down: no module-level instance, so tests build
their own with explicit values and nothing reads the environment behind their back.

The environment names are a contract with tools outside the repository (the playground, the
deployment), so every field maps to exactly one upper-case variable of the same name. Secrets
(the bot token, the export hash key, a database URL carrying a password) are kept out of
`repr()` so that logging the settings object cannot leak them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SQLITE_FILENAME = "bot.sqlite3"
EXPORT_KEY_FILENAME = "export_hash.key"
CALLBACK_KEY_FILENAME = "callback.key"


def parse_id_list(value: Any) -> Any:
    """Accept `ADMIN_IDS` as "1, 2", "1,2", "", a JSON list, or an already parsed sequence.

    Operators write the list by hand in a `.env` file or a unit file; commas with or without
    spaces must both work, and an empty value means "no admins" rather than an error.
    """
    if value is None:
        return frozenset()
    if isinstance(value, int):
        return frozenset({value})
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return frozenset()
        if text.startswith("["):
            try:
                decoded = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of ids: {text!r}") from exc
            return frozenset(decoded)
        parts = [part.strip() for part in text.split(",")]
        return frozenset(part for part in parts if part)
    return value


class BotSettings(BaseSettings):
    """Everything the bot process and its CLI read from the environment (or `.env`).

    Later issues add fields here; keep each one documented with its variable name.
    """

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    # TELEGRAM_BOT_TOKEN: the bot's token from @BotFather. Never logged.
    telegram_bot_token: SecretStr | None = None
    # TELEGRAM_API_BASE_URL: the Bot API endpoint prefix; PTB appends token + "/" + method.
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    # TELEGRAM_API_FILE_URL: the prefix for downloading files the users send.
    telegram_api_file_url: str = "https://api.telegram.org/file/bot"
    # ADMIN_IDS: comma-separated Telegram user ids allowed to run admin commands.
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    # PHOTOS_DIR: the hosting's photo folder (photo identities are paths relative to it).
    photos_dir: Path | None = None
    # INDEX_DIR: the engine's index of PHOTOS_DIR.
    index_dir: Path | None = None
    # DATA_DIR: where the embedded database and the export hash key live.
    data_dir: Path = Path("data")
    # DATABASE_URL: SQLAlchemy URL; default is a SQLite file under DATA_DIR. May hold a password.
    database_url: str = Field(default="", repr=False)
    # MODEL: the engine's model spec.
    model: str = "dual:default"
    # RESULTS_PER_QUERY: photos shown per page of results (one album holds at most 10).
    results_per_query: int = Field(default=10, ge=1, le=100)
    # EXPORT_HASH_KEY: key for pseudonymising user ids in exports; when unset, a random key is
    # created once in DATA_DIR/export_hash.key (mode 0600) and reused.
    export_hash_key: SecretStr | None = None

    # --- The running bot (added with the bot itself; all optional) ---------------------------
    # CALLBACK_SECRET: key that signs the data of inline buttons (votes, "more"); when unset a
    # random key is created once in DATA_DIR/callback.key (mode 0600) and reused, so buttons
    # keep working across restarts. Changing it makes older buttons answer "expired".
    callback_secret: SecretStr | None = None
    # QUERY_INTERVAL: seconds a user waits between two searches (queries and "more" pages).
    query_interval: float = Field(default=1.0, ge=0.0, le=60.0)
    # QUERY_QUEUE: searches one user may have waiting for their turn before the next is refused.
    query_queue: int = Field(default=3, ge=0, le=50)
    # SEARCH_WORKERS: searches (model inference) run at once; the rest wait their turn.
    search_workers: int = Field(default=2, ge=1, le=64)
    # PHOTO_LONG_SIDE: long side in pixels of the JPEGs uploaded to Telegram.
    photo_long_side: int = Field(default=1280, ge=160, le=1280)
    # LOG_LEVEL: DEBUG, INFO, WARNING or ERROR for the bot process.
    log_level: str = "INFO"
    # BOOTSTRAP_RETRIES: attempts to reach the Bot API at start (-1: forever) before exit 1.
    bootstrap_retries: int = Field(default=3, ge=-1)
    # WEBHOOK_URL: the public HTTPS URL Telegram posts updates to; set it to use webhook mode
    # instead of long polling. WEBHOOK_LISTEN / WEBHOOK_PORT: the local address to listen on
    # (behind a reverse proxy that terminates TLS); WEBHOOK_SECRET: Telegram's secret_token
    # header, checked on every update (a random one is made per run when unset).
    webhook_url: str | None = None
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_secret: SecretStr | None = None

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_admin_ids(cls, value: Any) -> Any:
        return parse_id_list(value)

    @model_validator(mode="after")
    def _default_database_url(self) -> BotSettings:
        """Derive the embedded SQLite URL from DATA_DIR when DATABASE_URL is unset or empty.

        Done after validation so that DATA_DIR given in the same environment is the one used.
        """
        if not self.database_url.strip():
            object.__setattr__(self, "database_url", default_sqlite_url(self.data_dir))
        return self

    @property
    def export_key_path(self) -> Path:
        """Where the generated export hash key is kept when EXPORT_HASH_KEY is unset."""
        return self.data_dir / EXPORT_KEY_FILENAME

    @property
    def callback_key_path(self) -> Path:
        """Where the generated button-signing key is kept when CALLBACK_SECRET is unset."""
        return self.data_dir / CALLBACK_KEY_FILENAME

    @property
    def model_explicit(self) -> bool:
        """True when MODEL was given; otherwise the bot uses the index's own model."""
        return "model" in self.model_fields_set


def default_sqlite_url(data_dir: Path) -> str:
    """The embedded database's URL: a SQLite file in DATA_DIR (relative paths stay relative)."""
    return f"sqlite:///{(data_dir / SQLITE_FILENAME).as_posix()}"
