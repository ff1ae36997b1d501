"""The hnsw backend on a fixed collection, against the exact one: recall, exclusions, withheld
counts, incremental sync (add, delete, change), persistence and recovery. Real usearch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.backends.base import open_backend, photo_key
from engine.backends.exact import ExactBackend
from engine.backends.hnsw import FLAGGED, STATE, UNFLAGGED, HnswBackend, sync
from engine.index import FORMAT_VERSION, PhotoIndex, write_generation

DIM = 256
N = 3000
K = 10


def clustered(n: int, seed: int, centers: int = 60) -> np.ndarray:
    """Unit rows in clusters (cosine to their centre ~0.7), like photo embeddings."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(1234).normal(size=(centers, DIM))
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    rows = middle[rng.integers(0, centers, n)] + rng.normal(0, 0.06, size=(n, DIM))
    unit: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return unit


def write_index(root: Path, paths: list[str], matrix: np.ndarray, *, model: str = "m@1",
                mtimes: dict[str, int] | None = None, dtype: str = "float32",
                flags: np.ndarray | None = None) -> PhotoIndex:
    mtimes = mtimes or {}
    manifest = {"format": FORMAT_VERSION, "model": model, "model_spec": None, "dim": DIM,
                "photo_dir": "/photos", "updated": "2026-11-29T00:00:00+00:00",
                "photos": [{"path": p, "size": 4096, "mtime_ns": mtimes.get(p, 7)}
                           for p in paths], "skipped": []}
    child = None if flags is None else (flags.astype(np.float32), flags)
    write_generation(root, manifest, matrix, dtype=dtype, child=child)
    return PhotoIndex.open(root)


def names(n: int, start: int = 0) -> list[str]:
    return [f"p{i:05d}.jpg" for i in range(start, start + n)]


@pytest.fixture()
def collection(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    paths, matrix = names(N), clustered(N, seed=0)
    write_index(tmp_path, paths, matrix)
    return tmp_path, paths, matrix


def queries(n: int = 200) -> np.ndarray:
    return clustered(n, seed=99)


def recall_at_k(backend: HnswBackend, index: PhotoIndex, exclude: np.ndarray | None = None
                ) -> float:
    exact = ExactBackend(index)
    hits = 0
    for q in queries():
        got = {r.row for r in backend.ranked(q, K, exclude).rows}
        hits += len(got & {r.row for r in exact.ranked(q, K, exclude).rows})
    return hits / (K * len(queries()))


def test_recall_matches_exact(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, _, _ = collection
    index = PhotoIndex.open(root)
    backend = HnswBackend.open(index)
    assert backend.sync_report.action == "built"
    assert (root / "hnsw" / STATE).is_file()
    assert recall_at_k(backend, index) >= 0.95
    # Scores are the exact backend's (re-scored from the stored embeddings), not f16 ones.
    q = queries(1)[0]
    top = backend.ranked(q, K).rows[0]
    assert top.score == pytest.approx(float(index.embeddings[top.row] @ q), abs=1e-6)


def test_float16_embeddings(tmp_path: Path) -> None:
    index = write_index(tmp_path, names(N), clustered(N, seed=0), dtype="float16")
    assert index.embeddings.dtype == np.float16
    assert recall_at_k(HnswBackend.open(index), index) >= 0.95


@pytest.mark.parametrize("share", [0.3, 0.85])
def test_exclusions_never_returned_and_withheld_counts_match(
        collection: tuple[Path, list[str], np.ndarray], share: float) -> None:
    root, _, _ = collection
    index = PhotoIndex.open(root)
    backend, exact = HnswBackend.open(index), ExactBackend(index)
    exclude = np.random.default_rng(5).random(N) < share
    agreed = same_count = 0
    for q in queries(100):
        ranking = backend.ranked(q, K, exclude)
        rows = [r.row for r in ranking.rows]
        assert len(rows) == K
        assert not exclude[rows].any()
        reference = exact.ranked(q, K, exclude)
        if rows == [r.row for r in reference.rows]:
            agreed += 1
            # An excluded row the graph missed can only make the count smaller, never larger.
            assert ranking.withheld <= reference.withheld
            assert all(a.withheld_above <= b.withheld_above
                       for a, b in zip(ranking.rows, reference.rows, strict=True))
            same_count += ranking == reference
    assert agreed >= 90
    assert same_count >= 0.9 * agreed
    assert recall_at_k(backend, index, exclude) >= 0.95


def test_fewer_allowed_than_k(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, _, _ = collection
    index = PhotoIndex.open(root)
    backend, exact = HnswBackend.open(index), ExactBackend(index)
    exclude = np.ones(N, dtype=bool)
    exclude[[3, 500, 2999]] = False
    q = queries(1)[0]
    ranking = backend.ranked(q, K, exclude)
    assert sorted(r.row for r in ranking.rows) == [3, 500, 2999]
    assert ranking == exact.ranked(q, K, exclude)
    assert backend.ranked(q, K, np.ones(N, dtype=bool)).rows == []
    assert backend.ranked(q, 0).rows == []


def test_reopen_uses_the_saved_graph(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, _, _ = collection
    index = PhotoIndex.open(root)
    first = HnswBackend.open(index)
    expected = [first.ranked(q, K) for q in queries(20)]
    first.close()
    again = HnswBackend.open(PhotoIndex.open(root))
    assert again.sync_report.action == "unchanged" and again.sync_report.added == 0
    assert [again.ranked(q, K) for q in queries(20)] == expected
    assert sync(PhotoIndex.open(root)).action == "unchanged"


def test_added_photos_are_synced_incrementally(
        collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    extra = clustered(300, seed=1)
    index = write_index(root, paths + names(300, start=N), np.concatenate([matrix, extra]))
    backend = HnswBackend.open(index)
    report = backend.sync_report
    assert (report.action, report.added, report.removed) == ("incremental", 300, 0)
    for i, vector in enumerate(extra[:50]):
        assert index.paths[backend.ranked(vector, 1).rows[0].row] == f"p{N + i:05d}.jpg"
    assert recall_at_k(backend, index) >= 0.95


def test_deleted_photos_are_never_returned(
        collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    keep = np.ones(N, dtype=bool)
    keep[::20] = False  # 150 photos go
    index = write_index(root, [p for p, k in zip(paths, keep, strict=True) if k], matrix[keep])
    backend = HnswBackend.open(index)
    report = backend.sync_report
    assert (report.action, report.added, report.removed) == ("incremental", 0, 150)
    gone = {p for p, k in zip(paths, keep, strict=True) if not k}
    assert backend.graphs is not None
    assert not any(graph.contains(photo_key(p)) for p in gone
                   for graph in backend.graphs.values())
    for vector in matrix[~keep][:50]:  # their own vectors: the nearest photo is another one
        found = [index.paths[r.row] for r in backend.ranked(vector, K).rows]
        assert len(found) == K and not gone & set(found)
    assert recall_at_k(backend, index) >= 0.95


def test_changed_photo_is_re_added(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    changed = matrix.copy()
    changed[42] = clustered(1, seed=77)[0]
    index = write_index(root, paths, changed, mtimes={paths[42]: 8})
    backend = HnswBackend.open(index)
    report = backend.sync_report
    assert (report.action, report.added, report.removed) == ("incremental", 1, 1)
    top = backend.ranked(changed[42], 1).rows[0]
    assert index.paths[top.row] == paths[42] and top.score == pytest.approx(1.0, abs=1e-5)
    assert HnswBackend.open(PhotoIndex.open(root)).sync_report.action == "unchanged"


def test_same_photos_in_a_new_generation_rewrite_only_the_state(
        collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    graph_files = sorted(p.name for p in (root / "hnsw").glob("graph-*"))
    index = write_index(root, paths, matrix)  # e.g. re-flagged: same photos, same vectors
    report = HnswBackend.open(index).sync_report
    assert (report.action, report.added, report.removed) == ("incremental", 0, 0)
    assert sorted(p.name for p in (root / "hnsw").glob("graph-*")) == graph_files


def test_many_deletions_rebuild(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    index = write_index(root, paths[: N // 2], matrix[: N // 2])
    report = HnswBackend.open(index).sync_report
    assert report.action == "built" and "degraded" in report.reason


@pytest.mark.parametrize("damage", ["garbage state", "no state", "no graph", "bad graph",
                                    "no members"])
def test_damaged_files_rebuild(collection: tuple[Path, list[str], np.ndarray],
                               damage: str) -> None:
    root, _, _ = collection
    sync(PhotoIndex.open(root))
    folder = root / "hnsw"
    graph = next(folder.glob("graph-*-unflagged.usearch"))
    if damage == "garbage state":
        (folder / STATE).write_text("{not json", encoding="utf-8")
    elif damage == "no state":
        (folder / STATE).unlink()
    elif damage == "no graph":
        graph.unlink()
    elif damage == "bad graph":
        graph.write_bytes(b"\0" * 100)
    else:
        next(folder.glob("members-*-unflagged.npy")).unlink()
    index = PhotoIndex.open(root)
    if damage == "no members":  # only a sync reads the members file
        index = write_index(root, index.paths, np.asarray(index.embeddings))
    backend = HnswBackend.open(index)
    assert backend.sync_report.action == "built"
    assert recall_at_k(backend, index) >= 0.95
    assert HnswBackend.open(PhotoIndex.open(root)).sync_report.action == "unchanged"


def test_model_change_rebuilds(collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    index = write_index(root, paths, matrix, model="m@2")
    report = HnswBackend.open(index).sync_report
    assert report.action == "built" and "m@1" in report.reason


def test_build_parameter_change_rebuilds(
        collection: tuple[Path, list[str], np.ndarray]) -> None:
    root, _, _ = collection
    sync(PhotoIndex.open(root))
    backend = HnswBackend.open(PhotoIndex.open(root), connectivity=8)
    assert backend.sync_report.action == "built"


def test_crash_before_the_commit_keeps_the_previous_graph(
        collection: tuple[Path, list[str], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))
    before = sorted(p.name for p in (root / "hnsw").iterdir())

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("engine.backends.hnsw.GraphStore._write_state", crash)
    index = write_index(root, paths + names(10, start=N),
                        np.concatenate([matrix, clustered(10, seed=3)]))
    with pytest.raises(KeyboardInterrupt):
        HnswBackend.open(index)
    monkeypatch.undo()
    # The new graph files lie beside the old ones, but the state still names the old ones.
    assert set(before) < {p.name for p in (root / "hnsw").iterdir()}
    backend = HnswBackend.open(index)
    assert (backend.sync_report.action, backend.sync_report.added) == ("incremental", 10)
    state = json.loads((root / "hnsw" / STATE).read_text())
    named = {STATE} | {name for part in state["parts"].values()
                       for name in (part["graph"], part["members"])}
    assert {p.name for p in (root / "hnsw").iterdir()} <= named  # leftovers cleaned up


def test_empty_index_and_open_backend(tmp_path: Path) -> None:
    index = write_index(tmp_path, [], np.zeros((0, DIM), dtype=np.float32))
    assert HnswBackend.open(index).ranked(queries(1)[0], K).rows == []
    index = write_index(tmp_path, names(50), clustered(50, seed=2))
    backend = open_backend("hnsw", index, ef_search=32)
    assert isinstance(backend, HnswBackend) and backend.ef_search == 32
    assert backend.sync_report.action in ("built", "incremental")
    assert len(backend.ranked(queries(1)[0], K).rows) == K
    backend.close()


def test_unwritable_directory_keeps_the_graph_in_memory(
        collection: tuple[Path, list[str], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, _ = collection

    def refuse(path: Path) -> None:
        raise PermissionError(f"read-only: {path}")

    monkeypatch.setattr("engine.backends.hnsw.exclusive_lock", refuse)
    index = PhotoIndex.open(root)
    backend = HnswBackend.open(index)
    assert backend.sync_report.action == "memory"
    assert not (root / "hnsw" / STATE).exists()
    assert recall_at_k(backend, index) >= 0.95


def test_failed_save_keeps_the_previous_files(
        collection: tuple[Path, list[str], np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, paths, matrix = collection
    sync(PhotoIndex.open(root))

    def disk_full(array: np.ndarray, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.backends.hnsw._save_npy", disk_full)
    index = write_index(root, paths[:-5], matrix[:-5])
    backend = HnswBackend.open(index)
    assert (backend.sync_report.action, backend.sync_report.removed) == ("memory", 5)
    assert len(backend.ranked(queries(1)[0], K).rows) == K
    monkeypatch.undo()
    assert HnswBackend.open(index).sync_report.action == "incremental"


def test_graph_in_another_directory(tmp_path: Path) -> None:
    index = write_index(tmp_path / "index", names(200), clustered(200, seed=4))
    elsewhere = tmp_path / "graphs" / "photos-hnsw"
    assert HnswBackend.open(index, directory=elsewhere).sync_report.action == "built"
    assert (elsewhere / STATE).is_file() and not (tmp_path / "index" / "hnsw").exists()
    assert (tmp_path / "graphs" / ".photos-hnsw.lock").is_file()
    again = HnswBackend.open(PhotoIndex.open(tmp_path / "index"), directory=elsewhere)
    assert again.sync_report.action == "unchanged"


@pytest.fixture()
def flagged(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """The collection with 85% of the photos flagged by the child filter (stored flags)."""
    flags = np.random.default_rng(11).random(N) < 0.85
    write_index(tmp_path, names(N), clustered(N, seed=0), flags=flags)
    return tmp_path, flags


def test_flagged_photos_have_their_own_graph(flagged: tuple[Path, np.ndarray]) -> None:
    root, flags = flagged
    index = PhotoIndex.open(root)
    backend, exact = HnswBackend.open(index), ExactBackend(index)
    assert backend.sizes == {UNFLAGGED: int((~flags).sum()), FLAGGED: int(flags.sum())}
    assert backend.plan(flags).split and not backend.plan(None).split
    agreed = same_count = 0
    for q in queries(100):
        ranking, reference = backend.ranked(q, K, flags), exact.ranked(q, K, flags)
        rows = [r.row for r in ranking.rows]
        assert len(rows) == K and not flags[rows].any()
        if rows == [r.row for r in reference.rows]:
            agreed += 1
            assert ranking.withheld <= reference.withheld
            same_count += ranking == reference
    assert agreed >= 90 and same_count >= 0.9 * agreed
    assert recall_at_k(backend, index, flags) >= 0.95
    assert recall_at_k(backend, index) >= 0.95  # no mask: both graphs, merged


def test_moderation_overrides_keep_the_split_search(flagged: tuple[Path, np.ndarray]) -> None:
    root, flags = flagged
    index = PhotoIndex.open(root)
    backend = HnswBackend.open(index)
    blocked, allowed = np.flatnonzero(~flags)[:5], np.flatnonzero(flags)[:5]
    mask = flags.copy()
    mask[blocked], mask[allowed] = True, False
    plan = backend.plan(mask)
    assert plan.split and plan.blocked == 5 and sorted(plan.allowed_flagged) == sorted(allowed)
    for row in allowed:  # a flagged photo moderation allows is found (scored exactly)
        assert backend.ranked(index.embeddings[row], 1, mask).rows[0].row == row
    for row in blocked:  # an unflagged photo moderation blocks is never returned
        assert row not in {r.row for r in backend.ranked(index.embeddings[row], K, mask).rows}
    assert recall_at_k(backend, index, mask) >= 0.95


def test_mask_unrelated_to_the_flags(flagged: tuple[Path, np.ndarray]) -> None:
    root, _ = flagged
    index = PhotoIndex.open(root)
    backend = HnswBackend.open(index)
    mask = np.random.default_rng(3).random(N) < 0.5
    assert not backend.plan(mask).split
    for q in queries(50):
        rows = [r.row for r in backend.ranked(q, K, mask).rows]
        assert len(rows) == K and not mask[rows].any()
    assert recall_at_k(backend, index, mask) >= 0.95


def test_reflagging_moves_photos_between_graphs(flagged: tuple[Path, np.ndarray]) -> None:
    root, flags = flagged
    index = PhotoIndex.open(root)
    sync(index)
    changed = flags.copy()
    changed[:100] = ~changed[:100]
    index = write_index(root, index.paths, np.asarray(index.embeddings), flags=changed)
    backend = HnswBackend.open(index)
    report = backend.sync_report
    assert (report.action, report.added, report.removed) == ("incremental", 100, 100)
    assert backend.sizes == {UNFLAGGED: int((~changed).sum()), FLAGGED: int(changed.sum())}
    assert recall_at_k(backend, index, changed) >= 0.95
