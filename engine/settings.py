"""Engine settings: one pydantic-settings class, read in `main()` and passed down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.backends.base import SearchBackend
    from engine.child_filter import ChildFilter
    from engine.encoders.base import Encoder
    from engine.index import PhotoIndex


class EngineSettings(BaseSettings):
    """Environment variables prefixed `ENGINE_` (and an optional `.env`); CLI flags win."""

    model_config = SettingsConfigDict(env_prefix="ENGINE_", env_file=".env", extra="ignore")

    model: str | None = Field(
        default=None,
        description="Model spec; unset means the index's own model, or dual:default for a new one.")
    query_head: str = Field(
        default="default",
        description="What embeds query texts of a dual encoder: default = the packaged MiniLM "
                    "query head when it was trained for the model (fast), full = the model's "
                    "own MiniLM+e5 head, or a query-head artifact directory.")
    russian_e5: bool = Field(
        default=False,
        description="Russian queries through a query head also read e5 and blend in the "
                    "model's own text head (weight stored with the query head). Off: ~20 ms "
                    "slower per Russian query on 2 cores, about as good on held-out translations.")
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
    index_backend: Literal["exact", "hnsw", "milvus"] = Field(
        default="exact",
        description="How the index is searched: exact = scan every vector (default, exact); "
                    "hnsw = graph persisted in INDEX_DIR/hnsw (millions of photos, ~1 ms); "
                    "milvus = a Milvus collection (Milvus Lite file INDEX_DIR/milvus.db, or a "
                    "cluster at ENGINE_MILVUS_URI). Switching never re-embeds a photo.")
    index_dtype: Literal["float32", "float16"] = Field(
        default="float32",
        description="Storage type of new embeddings; float16 halves memory and disk.")
    hnsw_ef_search: int | None = Field(
        default=None, ge=8, le=4096,
        description="HNSW search breadth (default: the backend's, chosen for recall@10 >= .95).")
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus URI (http://host:19530 for a cluster); unset = the Lite file.")
    milvus_token: SecretStr | None = Field(default=None, description="Milvus credentials.")
    milvus_collection: str | None = Field(
        default=None, description="Collection name (default: derived from the model).")
    checkpoint_seconds: float = Field(
        default=10.0, ge=0.0,
        description="Indexing checkpoints finished photos this often (0 = every batch), so a "
                    "crashed run resumes without redoing them.")
    test_batch_delay: float = Field(
        default=0.0, ge=0.0,
        description="Tests only: sleep after each indexing batch, so a test can kill a run "
                    "part-way. Never set it in production.")
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


def backend_from_settings(settings: EngineSettings, index: PhotoIndex) -> SearchBackend:
    """The search backend the settings ask for, over `index` (built or synced from the
    stored embeddings: nothing is re-embedded)."""
    from engine.backends.base import open_backend

    options: dict[str, object] = {}
    if settings.index_backend == "hnsw" and settings.hnsw_ef_search is not None:
        options["ef_search"] = settings.hnsw_ef_search
    if settings.index_backend == "milvus":
        options["uri"] = settings.milvus_uri
        options["collection"] = settings.milvus_collection
        options["token"] = (settings.milvus_token.get_secret_value()
                            if settings.milvus_token is not None else None)
    return open_backend(settings.index_backend, index, **options)
