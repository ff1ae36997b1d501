"""Engine settings: one pydantic-settings class, read in `main()` and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseSettings):
    """Environment variables prefixed `ENGINE_` (and an optional `.env`); CLI flags win."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", env_file=".env", extra="ignore")

    model: str | None = Field(
        default=None,
        description="Model spec; unset means the index's own model, or dual:default for a new one.")
    results: int = Field(default=10, ge=1, le=100)
    batch_size: int = Field(default=32, ge=1, le=1024)
    workers: int = Field(default=2, ge=1, le=64)
    legal_extra_lexicons: list[Path] = Field(
        default_factory=list, description="Admin lexicon files that extend the packaged ones.")
