"""The Milvus backend against a real Milvus Lite file (no fake): results match the exact scan,
exclusions hold, and `open` syncs a collection incrementally across generations.

One 2000-photo collection is shared by the search tests of this module (building it is the
slow part); the sync tests use small collections of their own.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from engine.backends.base import BackendError, SearchBackend, open_backend
from engine.backends.exact import ExactBackend
from engine.backends.milvus import (
    MilvusBackend,
    collection_name,
    plan_filter,
)
from engine.child_filter import ChildFilter
from engine.encoders.base import Encoder
from engine.index import PhotoIndex, update_index, write_generation
from engine.legal import LegalFilter
from engine.moderation import set_decision
from engine.search import SearchEngine

N, DIM, CLUSTERS = 2000, 256, 40
MODEL = "test:clustered/v1"


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return np.asarray(rows / np.linalg.norm(rows, axis=-1, keepdims=True), dtype=np.float32)


def clustered(rng: np.random.Generator, n: int, dim: int, clusters: int) -> np.ndarray:
    """Unit vectors around `clusters` centres: near neighbours exist, like photo embeddings."""
    centres = rng.normal(size=(clusters, dim))
    return unit(centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)))


def photo(i: int, mtime: int = 0) -> dict[str, Any]:
    return {"path": f"shoot/{i:05d}.jpg", "size": 1000 + i, "mtime_ns": 10**18 + i + mtime}


def write(root: Path, photos: list[dict[str, Any]], matrix: np.ndarray,
          flags: np.ndarray | None = None, model: str = MODEL) -> PhotoIndex:
    """Write one generation the way `update_index` does (photos sorted by path) and open it."""
    order = np.argsort([p["path"] for p in photos], kind="stable")
    manifest = {"format": 1, "model": model, "model_spec": None, "dim": int(matrix.shape[1]),
                "photo_dir": str(root / "photos"), "updated": "2026-11-29T00:00:00+00:00",
                "photos": [photos[i] for i in order], "skipped": []}
    child = None
    if flags is not None:
        flags = np.asarray(flags, dtype=bool)[order]
        child = (flags.astype(np.float32), flags)
    write_generation(root, manifest, matrix[order], child=child)
    return PhotoIndex.open(root)


def queries(rng: np.random.Generator, matrix: np.ndarray, count: int) -> np.ndarray:
    """Queries near stored photos (a text query lands near the photos it describes)."""
    picks = matrix[rng.integers(0, len(matrix), count)]
    return unit(picks + 0.08 * rng.normal(size=picks.shape))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[PhotoIndex, MilvusBackend, ExactBackend]]:
    rng = np.random.default_rng(7)
    matrix = clustered(rng, N, DIM, CLUSTERS)
    flags = rng.random(N) < 0.15
    root = tmp_path_factory.mktemp("milvus") / "index"
    index = write(root, [photo(i) for i in range(N)], matrix, flags)
    backend = MilvusBackend.open(index)
    backend.local_rows = 0  # every search goes to Milvus (the default scores few rows here)
    yield index, backend, ExactBackend(index)
    backend.close()


def flags_of(index: PhotoIndex) -> np.ndarray:
    return np.asarray(np.load(index.generation / "child_flags.npy"), dtype=bool)


def test_collection_built_from_stored_embeddings(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    index, backend, _ = shared
    assert backend.name == "milvus"
    assert backend.sync.rebuilt and backend.sync.inserted == N
    assert backend.uri == str(index.root / "milvus.db")
    assert backend.collection == collection_name(MODEL)
    assert backend.client.get_collection_stats(backend.collection)["row_count"] == N


def test_recall_at_10_matches_exact_with_flags_excluded(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    index, backend, exact = shared
    flags = flags_of(index)
    rng = np.random.default_rng(1)
    recalls, agreeing = [], 0
    for query in queries(rng, np.asarray(index.embeddings), 100):
        got, want = backend.ranked(query, 10, flags), exact.ranked(query, 10, flags)
        assert len(got.rows) == 10
        assert not any(flags[r.row] for r in got.rows)
        assert [r.score for r in got.rows] == sorted((r.score for r in got.rows), reverse=True)
        recalls.append(len({r.row for r in got.rows} & {r.row for r in want.rows}) / 10)
        if [r.row for r in got.rows] == [r.row for r in want.rows]:
            agreeing += 1
            assert got.withheld == want.withheld
            assert [r.withheld_above for r in got.rows] == [r.withheld_above for r in want.rows]
            np.testing.assert_allclose([r.score for r in got.rows],
                                       [r.score for r in want.rows], atol=1e-5)
    assert float(np.mean(recalls)) >= 0.95
    assert agreeing >= 80


def test_recall_without_exclusions(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    index, backend, exact = shared
    rng = np.random.default_rng(2)
    recalls = []
    for query in queries(rng, np.asarray(index.embeddings), 40):
        got, want = backend.ranked(query, 10), exact.ranked(query, 10)
        assert got.withheld == 0 and len(got.rows) == 10
        recalls.append(len({r.row for r in got.rows} & {r.row for r in want.rows}) / 10)
    assert float(np.mean(recalls)) >= 0.95


def test_moderation_overrides_block_unflagged_and_allow_flagged(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    index, backend, exact = shared
    flags = flags_of(index)
    matrix = np.asarray(index.embeddings)
    blocked = np.flatnonzero(~flags)[:25]  # an admin blocked these unflagged photos
    allowed = np.flatnonzero(flags)[:25]  # and cleared these flagged ones
    mask = flags.copy()
    mask[blocked] = True
    mask[allowed] = False
    plan = plan_filter(index.keys, flags, mask)
    assert plan is not None and plan.keys == 50 and "flagged" in (plan.allowed or "")
    for row in np.concatenate([blocked[:10], allowed[:10]]):
        got, want = backend.ranked(matrix[row], 10, mask), exact.ranked(matrix[row], 10, mask)
        rows = [r.row for r in got.rows]
        assert len(rows) == 10 and not any(mask[r] for r in rows)
        assert set(blocked).isdisjoint(rows)
        if row in allowed:
            assert rows[0] == row  # a cleared photo is found by its own vector
        assert len(set(rows) & {r.row for r in want.rows}) >= 9


@pytest.mark.parametrize("local_rows", [0, 4096])
def test_fewer_allowed_than_k_returns_them_all_and_withholds_every_excluded(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend], local_rows: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Three allowed photos: HNSW with so selective a filter misses some (then the backend
    scans exactly), and by default they are scored from the stored embeddings."""
    index, backend, exact = shared
    monkeypatch.setattr(backend, "local_rows", local_rows)
    query = np.asarray(index.embeddings[0])
    mask = np.ones(N, dtype=bool)
    mask[[3, 500, 1999]] = False
    got, want = backend.ranked(query, 10, mask), exact.ranked(query, 10, mask)
    assert sorted(r.row for r in got.rows) == [3, 500, 1999]
    assert got.withheld == want.withheld == N - 3
    assert [r.row for r in got.rows] == [r.row for r in want.rows]
    nothing = backend.ranked(query, 10, np.ones(N, dtype=bool))
    assert nothing.rows == [] and nothing.withheld == N
    assert backend.ranked(query, 0, mask).rows == []


def test_withheld_counts_flagged_rows_above_the_last_hit(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    index, backend, exact = shared
    flags = flags_of(index)
    row = int(np.flatnonzero(flags)[0])  # query by a flagged photo's own vector
    query = np.asarray(index.embeddings[row])
    got, want = backend.ranked(query, 5, flags), exact.ranked(query, 5, flags)
    assert row not in {r.row for r in got.rows}
    assert got.withheld >= 1 and got.rows[0].withheld_above >= 1
    assert got.withheld == want.withheld


def test_large_difference_from_stored_flags_falls_back_to_a_correct_answer(
        shared: tuple[PhotoIndex, MilvusBackend, ExactBackend]) -> None:
    """Flags from another detector (no `reflag` yet) still exclude exactly what the engine says,
    and with a short key limit the backend scans exactly instead of writing a huge filter."""
    index, backend, _ = shared
    rng = np.random.default_rng(3)
    other = rng.random(N) < 0.3  # unrelated to the stored flags
    query = queries(rng, np.asarray(index.embeddings), 1)[0]
    got = backend.ranked(query, 10, other)
    assert not any(other[r.row] for r in got.rows) and len(got.rows) == 10
    assert plan_filter(index.keys, flags_of(index), other, max_keys=100) is None


def test_plan_filter_picks_the_shortest_exact_encoding() -> None:
    keys = np.arange(100, 110, dtype=np.int64)
    flags = np.zeros(10, dtype=bool)
    flags[:3] = True
    assert plan_filter(keys, flags, None) is not None
    none = plan_filter(keys, flags, np.zeros(10, dtype=bool))
    assert none is not None and none.allowed is None and none.keys == 0
    same = plan_filter(keys, flags, flags.copy())
    assert same is not None and same.allowed == "flagged == false" and same.keys == 0
    assert same.excluded == "flagged == true"
    moderated = flags.copy()
    moderated[5] = True  # block
    moderated[0] = False  # allow
    plan = plan_filter(keys, flags, moderated)
    assert plan is not None and plan.keys == 2
    assert plan.allowed == "(flagged == false and key not in [105]) or key in [100]"
    assert plan.excluded == "(flagged == true or key in [105]) and key not in [100]"
    almost_all = np.ones(10, dtype=bool)
    almost_all[9] = False
    plan = plan_filter(keys, np.zeros(10, dtype=bool), almost_all)
    assert plan is not None and plan.allowed == "key in [109]"
    assert plan.excluded == "key not in [109]"
    few = np.zeros(10, dtype=bool)
    few[[4, 7]] = True
    plan = plan_filter(keys, ~few, few)  # stored flags disagree everywhere
    assert plan is not None and plan.allowed == "key not in [104,107]"


def test_collection_name_follows_milvus_rules() -> None:
    name = collection_name("open_clip:/models/ViT-B-32.json:laion2b/v1")
    assert name[0].isalpha() and len(name) <= 255
    assert all(c.isalnum() or c == "_" for c in name)
    assert collection_name("a/b") != collection_name("a_b")


# ------------------------------------------------------------------------------ sync


def small(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    return clustered(rng, n, dim, 8)


def test_sync_inserts_deletes_and_updates_only_what_changed(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    root = tmp_path / "index"
    vectors = small(rng, 330)
    flags = rng.random(330) < 0.2
    first = write(root, [photo(i) for i in range(300)], vectors[:300], flags[:300])
    backend = MilvusBackend.open(first)
    assert backend.sync.inserted == 300 and backend.sync.rebuilt
    backend.close()

    reopened = MilvusBackend.open(PhotoIndex.open(root))  # persistence: nothing written
    assert reopened.sync.skipped and reopened.sync.writes == 0
    reopened.client.release_collection(reopened.collection)  # as a fresh process finds it
    reopened.close()

    # Next generation: 20 photos deleted, 30 added, 10 re-shot (new file, new vector),
    # 5 re-flagged (same file).
    photos = [photo(i) for i in range(20, 330)]
    matrix = vectors[20:].copy()
    new_flags = flags[20:].copy()
    reshot = np.arange(40, 50) - 20
    for j in reshot:
        photos[j] = photo(int(j) + 20, mtime=7)
    matrix[reshot] = small(rng, 10)
    reflagged = np.arange(60, 65) - 20
    new_flags[reflagged] = ~new_flags[reflagged]
    second = write(root, photos, matrix, new_flags)
    backend = MilvusBackend.open(second)
    try:
        assert (backend.sync.inserted, backend.sync.deleted, backend.sync.updated) == (30, 20, 15)
        assert backend.sync.unchanged == 300 - 20 - 15 and not backend.sync.rebuilt
        assert backend.client.get_collection_stats(backend.collection)["row_count"] == 310
        gone = [int(k) for k in first.keys[:20]]
        assert backend.client.get(backend.collection, ids=gone) == []
        new_flags_by_row = flags_of(second)
        for j in [*range(290, 310), *reshot]:  # added and re-shot photos: found by new vector
            row = second.row(photos[j]["path"])
            assert row is not None
            top = backend.ranked(matrix[j], 1, new_flags_by_row & (np.arange(310) != row))
            assert top.rows[0].row == row and top.rows[0].score == pytest.approx(1.0, abs=1e-4)
        for j in reflagged:  # the new flag is what the stored field says
            row = second.row(photos[j]["path"])
            assert row is not None
            stored = backend.client.get(backend.collection, ids=[int(second.keys[row])],
                                        output_fields=["flagged"])
            assert bool(stored[0]["flagged"]) == bool(new_flags[j])
            hits = backend.ranked(matrix[j], 5, new_flags_by_row)
            assert (row in {r.row for r in hits.rows}) == (not new_flags[j])
    finally:
        backend.close()

    # A process still holding the first generation neither rewrites nor returns stale rows.
    stale = MilvusBackend.open(first)
    try:
        assert stale.sync.skipped and stale.sync.writes == 0
        current = MilvusBackend.open(second)
        current.close()
        assert current.sync.skipped  # the collection still follows `second`
        hits = stale.ranked(vectors[0], 10)  # photo 0 was deleted from the collection
        assert all(r.row != 0 for r in hits.rows) and len(hits.rows) == 10
    finally:
        stale.close()


def test_model_or_dim_change_rebuilds_the_collection(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(12)
    root = tmp_path / "index"
    index = write(root, [photo(i) for i in range(50)], small(rng, 50))
    first = MilvusBackend.open(index, collection="photos")
    first.close()
    other_model = write(root, [photo(i) for i in range(40)], small(rng, 40), model="test:other")
    with caplog.at_level(logging.WARNING, logger="engine.backends.milvus"):
        rebuilt = MilvusBackend.open(other_model, collection="photos")
    rebuilt.close()
    assert rebuilt.sync.rebuilt and rebuilt.sync.inserted == 40
    assert "dropping and rebuilding" in caplog.text
    wider = write(root, [photo(i) for i in range(30)], small(rng, 30, dim=48),
                  model="test:other")
    backend = open_backend("milvus", wider, collection="photos")
    try:
        assert isinstance(backend, MilvusBackend)
        assert backend.sync.rebuilt and backend.sync.inserted == 30
        assert backend.ranked(np.asarray(wider.embeddings[3]), 1).rows[0].row == 3
    finally:
        backend.close()


def test_foreign_collection_is_never_dropped(tmp_path: Path) -> None:
    from pymilvus import DataType, MilvusClient

    rng = np.random.default_rng(13)
    root = tmp_path / "index"
    index = write(root, [photo(i) for i in range(10)], small(rng, 10))
    client = MilvusClient(str(root / "milvus.db"))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=32)
    client.create_collection("theirs", schema=schema)
    try:
        with pytest.raises(BackendError, match="choose another collection name"):
            MilvusBackend.open(index, collection="theirs")
        assert client.has_collection("theirs")
    finally:
        client.close()


def test_search_engine_over_milvus_answers_like_the_exact_scan(
        tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path) -> None:
    """The engine never knows which backend runs: same hits, moderation blocks honoured."""
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    index = PhotoIndex.open(tmp_path / "idx")
    legal = LegalFilter.default()

    def milvus_only(index: PhotoIndex) -> SearchBackend:
        backend = open_backend("milvus", index)
        assert isinstance(backend, MilvusBackend)
        backend.local_rows = 0  # six photos: make Milvus answer, not the local scorer
        return backend

    exact = SearchEngine(tiny_encoder, index, legal, ChildFilter.off())
    milvus = SearchEngine(tiny_encoder, index, legal, ChildFilter.off(), backend=milvus_only)
    try:
        for text in ("a red photo", "green grass", "a grey wall"):
            want = exact.search(text, k=4)
            got = milvus.search(text, k=4)
            assert [h.photo for h in got.hits] == [h.photo for h in want.hits]
            assert [h.score for h in got.hits] == pytest.approx([h.score for h in want.hits],
                                                                abs=1e-5)
        set_decision(tmp_path / "idx", "red.jpg", "block")
        got, want = milvus.search("a red photo", k=6), exact.search("a red photo", k=6)
        assert "red.jpg" not in [h.photo for h in got.hits] and len(got.hits) == 5
        assert [h.photo for h in got.hits] == [h.photo for h in want.hits]
        assert got.withheld == want.withheld == 1
    finally:
        milvus.close()


def test_server_uri(tmp_path: Path) -> None:
    """`uri=http://host:port` (how a cluster is reached) against a `milvus-lite server` process:
    another process serves the collection, and a second client of the server can search it
    while the first is open (what a shared Lite file cannot do)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "served"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        rng = np.random.default_rng(14)
        index = write(tmp_path / "index", [photo(i) for i in range(200)], small(rng, 200))
        uri = f"http://127.0.0.1:{port}"
        first = MilvusBackend.open(index, uri=uri)
        second = MilvusBackend.open(index, uri=uri)
        try:
            assert first.sync.inserted == 200 and second.sync.skipped
            assert second.ranked(np.asarray(index.embeddings[17]), 1).rows[0].row == 17
        finally:
            first.close()
            second.close()
        assert not (tmp_path / "index" / "milvus.db").exists()  # no Lite file was made
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_empty_index(tmp_path: Path) -> None:
    root = tmp_path / "index"
    index = write(root, [], np.zeros((0, 16), dtype=np.float32))
    backend = MilvusBackend.open(index)
    try:
        assert backend.ranked(np.ones(16, dtype=np.float32) / 4, 5).rows == []
    finally:
        backend.close()
