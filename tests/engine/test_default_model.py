"""The packaged default model: loads offline, and finds the obvious photo for obvious queries.

The photos are the ones that ship inside scikit-image (what `make demo` indexes); the queries
name what is plainly in them, in English and in Russian. Photo-side child filtering is off
here (`ChildFilter.off()`): this file tests the model's ranking, `test_child_filter*` the
filter. Ranking tests run with both text heads over one index: the packaged MiniLM query head
(the default) and the model's own MiniLM+e5 head (`ENGINE_QUERY_HEAD=full`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from engine.child_filter import ChildFilter
from engine.encoders import DEFAULT_MODEL_SPEC, FULL_TEXT_HEAD, load_encoder
from engine.encoders.base import Encoder, encode_images, text_model_name
from engine.encoders.dual import DEFAULT_ARTIFACT, DEFAULT_QUERY_HEAD, DualEncoder
from engine.index import PhotoIndex, update_index
from engine.legal import LegalFilter
from engine.search import SearchEngine

SAMPLES = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "horse.png",
           "coins.png", "camera.png", "moon.png", "brick.png", "grass.png", "gravel.png",
           "motorcycle_left.png", "hubble_deep_field.jpg", "text.png", "page.png")


@pytest.fixture(scope="module")
def default_encoder() -> Encoder:
    return load_encoder(DEFAULT_MODEL_SPEC)


@pytest.fixture(scope="module")
def full_head_encoder() -> Encoder:
    return load_encoder(DEFAULT_MODEL_SPEC, FULL_TEXT_HEAD)


@pytest.fixture(scope="module")
def sample_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = tmp_path_factory.mktemp("samples")
    for name in SAMPLES:
        shutil.copy(Path(skimage.data.data_dir) / name, photos / name)
    return photos


@pytest.fixture(scope="module")
def sample_index(default_encoder: Encoder, sample_photos: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("index")
    update_index(sample_photos, index, default_encoder, progress=False)
    return index


@pytest.fixture(scope="module", params=["query head", "full head"])
def sample_engine(request: pytest.FixtureRequest, sample_index: Path, default_encoder: Encoder,
                  full_head_encoder: Encoder) -> SearchEngine:
    """One index, searched through either text head (no re-indexing between them)."""
    encoder = default_encoder if request.param == "query head" else full_head_encoder
    return SearchEngine(encoder, PhotoIndex.open(sample_index), LegalFilter.default(),
                        ChildFilter.off())


def test_artifact_carries_name_version_metrics_and_card(default_encoder: Encoder) -> None:
    metrics = json.loads((DEFAULT_ARTIFACT / "metrics.json").read_text())
    assert default_encoder.name == f"{metrics['name']}@{metrics['version']}"
    card = (DEFAULT_ARTIFACT / "MODEL_CARD.md").read_text()
    assert "python -m training" in card and "train-dual-encoder" in card and "Flickr8k" in card
    for key in ("flickr8k_test", "seed_test", "dev"):
        assert 0.0 < metrics[key]["R@5"] <= 1.0


def test_packaged_query_head_embeds_queries_by_default(default_encoder: Encoder,
                                                       full_head_encoder: Encoder) -> None:
    query = json.loads((DEFAULT_QUERY_HEAD / "metrics.json").read_text())
    assert query["image_space"] == default_encoder.name == full_head_encoder.name
    assert text_model_name(default_encoder) == (f"{default_encoder.name}+{query['name']}@"
                                                f"{query['version']}")
    assert text_model_name(full_head_encoder) == full_head_encoder.name
    assert isinstance(default_encoder, DualEncoder)
    assert default_encoder.text_config.text_towers == ("minilm",)  # e5 is never loaded
    card = (DEFAULT_QUERY_HEAD / "MODEL_CARD.md").read_text()
    assert "train-query-head" in card and default_encoder.name in card


def test_russian_queries_read_the_gloss_alone_unless_e5_is_asked_for(
        default_encoder: Encoder) -> None:
    """By default no query runs e5 (latency); `russian_e5` blends the base's head, whose e5
    reads the Russian itself, into Russian queries only."""
    texts = ["a dog on a beach", "собака на пляже"]
    plain = default_encoder.encode_texts(texts)
    assert isinstance(default_encoder, DualEncoder)
    assert "e5" not in default_encoder._text_towers
    blended = load_encoder(DEFAULT_MODEL_SPEC, russian_e5=True)
    both = blended.encode_texts(texts)
    np.testing.assert_allclose(both[0], plain[0], atol=1e-6)
    assert float(both[1] @ plain[1]) < 0.999
    assert text_model_name(blended) == f"{text_model_name(default_encoder)}+e5-ru"


def test_both_text_heads_share_the_photo_embeddings(default_encoder: Encoder,
                                                    full_head_encoder: Encoder,
                                                    sample_photos: Path) -> None:
    photos = sorted(sample_photos.iterdir())[:4]
    np.testing.assert_array_equal(encode_images(default_encoder, photos),
                                  encode_images(full_head_encoder, photos))


def test_embeddings_are_unit_rows(default_encoder: Encoder) -> None:
    vectors = default_encoder.encode_texts(["a dog on a beach", "собака на пляже", ""])
    assert vectors.shape == (3, default_encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("query, expected", [
    ("a horse", "horse.png"),
    ("a man with a camera", "camera.png"),
    ("a ginger cat", "chelsea.png"),
    ("grass", "grass.png"),
    ("лошадь", "horse.png"),
    ("мужчина с фотоаппаратом", "camera.png"),
    ("рыжий кот", "chelsea.png"),
])
def test_obvious_queries_find_the_obvious_photo(sample_engine: SearchEngine, query: str,
                                                expected: str) -> None:
    """Subjects of the training domain (people, animals, vehicles, scenes), both languages."""
    result = sample_engine.search(query, k=3)
    assert not result.blocked
    assert result.hits[0].photo == expected, [h.photo for h in result.hits]


def test_objects_outside_the_training_domain_still_rank_high(sample_engine: SearchEngine
                                                             ) -> None:
    """Flickr8k has few photos of objects: "a cup of coffee" is a weak spot (the model card
    says so); the coffee photo must still be among the first three of fifteen."""
    photos = [h.photo for h in sample_engine.search("a cup of coffee", k=3).hits]
    assert "coffee.png" in photos, photos


def test_russian_and_english_rank_alike(sample_engine: SearchEngine) -> None:
    english = [h.photo for h in sample_engine.search("a horse", k=15).hits]
    russian = [h.photo for h in sample_engine.search("лошадь", k=15).hits]
    assert english[0] == russian[0]
    assert len(set(english[:5]) & set(russian[:5])) >= 3


def test_refused_query_never_reaches_the_model(sample_engine: SearchEngine) -> None:
    result = sample_engine.search("a little girl")
    assert result.blocked and result.hits == [] and result.message is not None


def test_parallel_text_towers_give_the_sequential_vectors(full_head_encoder: Encoder) -> None:
    """The full head's two text towers run on two threads for speed; the result must not
    change."""
    assert isinstance(full_head_encoder, DualEncoder)
    texts = ["two dogs running on a beach at sunset", "собака бежит по пляжу",
             "a red car", "велосипедист на горной дороге"]
    full_head_encoder.parallel_towers = True
    parallel = [full_head_encoder.encode_texts([t])[0] for t in texts]
    batched = full_head_encoder.encode_texts(texts)
    full_head_encoder.parallel_towers = False
    try:
        sequential = full_head_encoder.encode_texts(texts)
    finally:
        full_head_encoder.parallel_towers = True
    np.testing.assert_allclose(np.stack(parallel), sequential, atol=1e-5)
    np.testing.assert_allclose(batched, sequential, atol=1e-5)
