"""SearchEngine: validation, refusals, ranking, paging and photo queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.child_filter import ChildFilter
from engine.encoders.base import Encoder
from engine.index import IndexModelMismatchError, PhotoIndex, update_index
from engine.legal import DISCLAIMER_EN, DISCLAIMER_RU, LegalFilter
from engine.search import MAX_QUERY_CHARS, QueryError, SearchEngine, validate_query


@pytest.fixture(scope="module")
def legal() -> LegalFilter:
    return LegalFilter.default()


@pytest.fixture()
def engine(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path, legal: LegalFilter
           ) -> SearchEngine:
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    # The random test model's zero-shot child scores are noise; the photo-side filter is
    # tested in test_child_filter.py with a deterministic detector.
    return SearchEngine(tiny_encoder, PhotoIndex.open(tmp_path / "idx"), legal,
                        ChildFilter.off())


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_queries_are_refused_with_advice(text: str) -> None:
    with pytest.raises(QueryError, match="empty"):
        validate_query(text)


def test_overlong_query_is_refused() -> None:
    assert validate_query("  a" * 10 + " ") == ("  a" * 10).strip()
    validate_query("x" * MAX_QUERY_CHARS)
    with pytest.raises(QueryError, match=str(MAX_QUERY_CHARS)):
        validate_query("x" * (MAX_QUERY_CHARS + 1))


def test_children_queries_get_the_disclaimer_and_no_photos(engine: SearchEngine) -> None:
    english = engine.search("a little girl on a swing")
    assert english.blocked and english.message == DISCLAIMER_EN and english.hits == []
    russian = engine.search("маленькая девочка на качелях")
    assert russian.blocked and russian.message == DISCLAIMER_RU and russian.language == "ru"
    payload = english.to_json()
    assert {k: payload[k] for k in ("query", "blocked", "message", "results")} == {
        "query": "a little girl on a swing", "blocked": True, "message": DISCLAIMER_EN,
        "results": []}
    assert payload["withheld"] == 0  # additive key: nothing was searched


def test_results_are_ranked_and_paged(engine: SearchEngine) -> None:
    first = engine.search("a red photo", k=3)
    assert not first.blocked and first.message is None and len(first.hits) == 3
    scores = [h.score for h in first.hits]
    assert scores == sorted(scores, reverse=True)
    everything = engine.search("a red photo", k=6)
    second = engine.search("a red photo", k=3, offset=3)
    assert [h.photo for h in first.hits + second.hits] == [h.photo for h in everything.hits]
    assert all(h.path == engine.index.photo_dir / h.photo and h.path.exists()
               for h in everything.hits)
    assert len(engine.search("a red photo", k=50).hits) == 6


def test_a_photo_finds_itself_first(engine: SearchEngine, photo_dir: Path) -> None:
    result = engine.search_by_photo(photo_dir / "trips" / "yellow.jpg", k=2)
    assert result.hits[0].photo == "trips/yellow.jpg"
    result_bytes = engine.search_by_photo((photo_dir / "blue.webp").read_bytes(), k=1)
    assert result_bytes.hits[0].photo == "blue.webp"


def test_engine_refuses_an_index_of_another_model(tiny_encoder: Encoder, photo_dir: Path,
                                                  tmp_path: Path, legal: LegalFilter) -> None:
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    index = PhotoIndex.open(tmp_path / "idx")
    index.manifest["model"] = "somebody-else@9"  # as if another model had built it
    with pytest.raises(IndexModelMismatchError, match="re-index"):
        SearchEngine(tiny_encoder, index, legal)
