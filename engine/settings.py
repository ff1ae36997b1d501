"""Engine settings: one pydantic-settings class, read in `main()` and passed down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.child_filter import ChildFilter
    from engine.encoders.base import Encoder


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
    rerank: Path | None = Field(
        default=None,
        description="Re-ranker artifact (`python -m training seed-study`); unset = off.")
    rerank_depth: int | None = Field(
        default=None, ge=1, le=1000,
        description="First-stage candidates the re-ranker re-orders (default: the artifact's).")
    child_filter: Literal["auto", "trained", "zero-shot", "off"] = Field(
        default="auto",
        description="Photo-side child filter: auto = the trained detector for the model, else "
                    "zero-shot prompts; trained = refuse to run without a trained detector; "
                    "off = no detector (logged with every search; moderation blocks still "
                    "apply).")
    child_detector: Path | None = Field(
        default=None,
        description="Child detector artifact directory (default: the packaged one).")
    child_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Flag photos scoring at or above this (default: the detector's own, "
                    "chosen on Flickr8k DEV). Change it, then `python -m engine reflag`.")
    child_zero_shot_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Threshold of the zero-shot fallback (default 0.2, uncalibrated).")


def child_filter_from_settings(settings: EngineSettings, encoder_name: str,
                               encoder: Callable[[], Encoder] | None = None) -> ChildFilter:
    """The child filter the settings ask for, for one encoder (see `build_child_filter`)."""
    from engine.child_filter import build_child_filter

    return build_child_filter(encoder_name, mode=settings.child_filter,
                              detector_dir=settings.child_detector,
                              threshold=settings.child_threshold,
                              zero_shot_threshold=settings.child_zero_shot_threshold,
                              encoder=encoder)
