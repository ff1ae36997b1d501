"""Bot test fixtures: a photo collection, a tiny model, its index, and the expected rankings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.search import SearchEngine
from tests.bot.e2e import make_collection, make_tiny_model


@dataclass(frozen=True)
class Collection:
    photos: Path
    index: Path
    model_spec: str


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    """Twelve photos, a tiny model with fixed weights, and the index the bots search."""
    from engine.encoders import load_encoder
    from engine.index import update_index

    root = tmp_path_factory.mktemp("collection")
    photos = make_collection(root / "photos")
    spec = make_tiny_model(root / "model")
    index = root / "index"
    update_index(photos, index, load_encoder(spec), model_spec=spec, progress=False)
    return Collection(photos=photos, index=index, model_spec=spec)


@pytest.fixture(scope="session")
def expected(collection: Collection) -> SearchEngine:
    """The same engine the bot builds (same model, index, filter): it says what to expect."""
    from engine.child_filter import ChildFilter
    from engine.encoders import load_encoder
    from engine.index import PhotoIndex
    from engine.legal import LegalFilter

    return SearchEngine(
        load_encoder(collection.model_spec), PhotoIndex.open(collection.index),
        LegalFilter.default(), ChildFilter.off(),  # as the bot runs in these tests (bot_env)
    )
