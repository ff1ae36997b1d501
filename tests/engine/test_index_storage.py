"""Index storage: columnar photo table, float16 embeddings, stable keys, old format, exact
backend equivalence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.backends.base import KeyMap, photo_key, photo_keys, ranking_from_candidates
from engine.backends.exact import ExactBackend, rank_scores, scores_of
from engine.encoders.base import Encoder
from engine.index import (
    CURRENT,
    FORMAT_VERSION,
    IndexNotFoundError,
    PhotoIndex,
    update_index,
    write_generation,
)


def _unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _manifest(paths: list[str], dim: int) -> dict[str, object]:
    return {"format": FORMAT_VERSION, "model": "m@1", "model_spec": None, "dim": dim,
            "photo_dir": "/photos", "updated": "2026-11-29T00:00:00+00:00",
            "photos": [{"path": p, "size": i, "mtime_ns": 10 * i} for i, p in enumerate(paths)],
            "skipped": []}


def test_photos_are_stored_as_columns_not_json(tmp_path: Path) -> None:
    paths = [f"dir/p{i:04d}.jpg" for i in range(50)]
    write_generation(tmp_path, _manifest(paths, 8), _unit_rows(50, 8))
    index = PhotoIndex.open(tmp_path)
    manifest = json.loads((index.generation / "manifest.json").read_text())
    assert "photos" not in manifest and manifest["count"] == 50
    assert index.paths == paths
    assert index.signatures()["dir/p0007.jpg"] == (7, 70)
    assert index.row("dir/p0049.jpg") == 49 and index.row("missing.jpg") is None
    np.testing.assert_array_equal(index.keys, photo_keys(paths))


def test_format_1_index_still_opens(tmp_path: Path) -> None:
    """An index written before the columnar layout (photos inside manifest.json)."""
    generation = tmp_path / "gen-000001"
    generation.mkdir()
    manifest = _manifest(["a.jpg", "b.jpg"], 4)
    manifest["format"] = 1
    (generation / "manifest.json").write_text(json.dumps(manifest))
    matrix = _unit_rows(2, 4)
    np.save(generation / "embeddings.npy", matrix)
    (tmp_path / CURRENT).write_text("gen-000001")
    index = PhotoIndex.open(tmp_path)
    assert index.paths == ["a.jpg", "b.jpg"]
    assert index.signatures() == {"a.jpg": (0, 0), "b.jpg": (1, 10)}
    assert index.top_k(matrix[1], 1)[0][0] == 1
    np.testing.assert_array_equal(index.keys, [photo_key("a.jpg"), photo_key("b.jpg")])


def test_damaged_generation_is_a_clear_error(tmp_path: Path) -> None:
    write_generation(tmp_path, _manifest(["a.jpg", "b.jpg"], 4), _unit_rows(2, 4))
    generation = PhotoIndex.open(tmp_path).generation
    (generation / "paths.txt").write_text("a.jpg\n")
    with pytest.raises(IndexNotFoundError, match="damaged"):
        PhotoIndex.open(tmp_path)


def test_float16_storage_ranks_like_float32(tmp_path: Path) -> None:
    matrix = _unit_rows(3000, 32, seed=1)
    paths = [f"p{i}.jpg" for i in range(3000)]
    write_generation(tmp_path / "f32", _manifest(paths, 32), matrix)
    write_generation(tmp_path / "f16", _manifest(paths, 32), matrix, dtype="float16")
    full, half = PhotoIndex.open(tmp_path / "f32"), PhotoIndex.open(tmp_path / "f16")
    assert half.embeddings.dtype == np.float16
    assert (half.generation / "embeddings.npy").stat().st_size < \
        0.6 * (full.generation / "embeddings.npy").stat().st_size
    queries = _unit_rows(50, 32, seed=2)
    overlap = [len({r for r, _ in full.top_k(q, 10)} & {r for r, _ in half.top_k(q, 10)})
               for q in queries]
    assert np.mean(overlap) >= 9.5  # float16 rounding swaps at most near-ties
    np.testing.assert_allclose(scores_of(half.embeddings, queries[0]),
                               scores_of(full.embeddings, queries[0]), atol=2e-3)


def test_float16_survives_an_update(tiny_encoder: Encoder, photo_dir: Path,
                                    tmp_path: Path) -> None:
    root = tmp_path / "idx"
    update_index(photo_dir, root, tiny_encoder, progress=False, dtype="float16")
    (photo_dir / "red.jpg").unlink()
    update_index(photo_dir, root, tiny_encoder, progress=False)  # dtype unset: keep it
    index = PhotoIndex.open(root)
    assert index.embeddings.dtype == np.float16 and "red.jpg" not in index.paths


def test_key_map_round_trip() -> None:
    keys = photo_keys([f"x/{i}.jpg" for i in range(100)])
    mapping = KeyMap(keys)
    rows = np.array([5, 0, 99])
    np.testing.assert_array_equal(mapping.rows(keys[rows]), rows)
    assert mapping.rows(np.array([photo_key("not there")]))[0] == -1
    assert KeyMap(np.zeros(0, np.int64)).rows(keys[:2]).tolist() == [-1, -1]
    assert photo_key("a.jpg") == photo_key("a.jpg") != photo_key("b.jpg")
    assert 0 <= photo_key("a.jpg") < 2**63


def test_candidates_rank_like_the_exact_scan() -> None:
    """An ANN's unfiltered candidate list, filtered, gives the exact scan's answer and
    withheld counts when the candidates hold the true top rows."""
    rng = np.random.default_rng(3)
    raw = rng.normal(size=500).astype(np.float32)
    exclude = rng.random(500) < 0.85
    exact = rank_scores(raw, 10, exclude)
    order = np.argsort(-raw, kind="stable")
    from_candidates = ranking_from_candidates(order[:200], raw[order[:200]], 10, exclude,
                                              exhaustive=False)
    assert from_candidates == exact
    # Too few candidates: the caller must ask for more.
    assert ranking_from_candidates(order[:12], raw[order[:12]], 10, exclude,
                                   exhaustive=False) is None
    # Exhaustive list with fewer allowed rows than k: every excluded row is withheld.
    few = np.zeros(500, dtype=bool)
    few[3:] = True
    short = ranking_from_candidates(order, raw[order], 10, few, exhaustive=True)
    assert short is not None and len(short.rows) == 3 and short.withheld == 497
    assert short == rank_scores(raw, 10, few)


def test_exact_backend_is_the_index_scan(tmp_path: Path) -> None:
    matrix = _unit_rows(400, 16, seed=4)
    write_generation(tmp_path, _manifest([f"p{i}.jpg" for i in range(400)], 16), matrix)
    index = PhotoIndex.open(tmp_path)
    backend = ExactBackend(index)
    exclude = np.zeros(400, dtype=bool)
    exclude[::3] = True
    for query in _unit_rows(20, 16, seed=5):
        assert backend.ranked(query, 10, exclude) == index.ranked(query, 10, exclude)
        best = int(np.argmax(np.where(exclude, -np.inf, matrix @ query)))
        assert backend.ranked(query, 1, exclude).rows[0].row == best


def test_float32_scan_gives_the_same_scores_on_one_or_all_blas_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Small scans run on one BLAS thread (so its pool never spins against the text towers),
    large ones on all; the scores must not depend on which."""
    import engine.backends.exact as exact

    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(5000, 64)).astype(np.float32)
    query = rng.normal(size=64).astype(np.float32)
    expected = matrix.astype(np.float64) @ query.astype(np.float64)
    single = scores_of(matrix, query)
    monkeypatch.setattr(exact, "SINGLE_THREAD_ROWS", 100)
    threaded = scores_of(matrix, query)
    assert single.dtype == threaded.dtype == np.float32
    np.testing.assert_allclose(single, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(threaded, expected, rtol=1e-4, atol=1e-4)


def _float64_ranking(matrix: np.ndarray, query: np.ndarray, k: int,
                     exclude: np.ndarray | None) -> tuple[list[int], int]:
    """Reference top-k rows and withheld count, in float64, written independently."""
    scores = matrix.astype(np.float64) @ query.astype(np.float64)
    allowed = np.flatnonzero(~exclude) if exclude is not None else np.arange(len(scores))
    top = allowed[np.argsort(-scores[allowed], kind="stable")[:k]]
    if exclude is None:
        return top.tolist(), 0
    excluded = scores[exclude]
    withheld = (len(excluded) if len(top) < k
                else int(np.count_nonzero(excluded >= scores[top[-1]])))
    return top.tolist(), withheld


@pytest.mark.parametrize("stored", [np.float32, np.float16])
def test_large_exact_scan_prescored_in_float16_stays_exact(stored: type) -> None:
    """From HALF_SCAN_ROWS rows on, the exact backend pre-scores a float16 copy and re-scores
    the rows near the k-th in float32: the rows, their order, their scores and the withheld
    counts must be those of a full-precision scan, with near-duplicate rows (the hard case
    for float16) and with most rows excluded."""
    from engine.backends.exact import HALF_SCAN_ROWS

    rng = np.random.default_rng(7)
    base = _unit_rows(500, 64, seed=7)
    matrix = np.concatenate([base] * (HALF_SCAN_ROWS // 500 + 1))
    matrix = matrix + rng.normal(0, 0.002, size=matrix.shape).astype(np.float32)
    matrix = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(stored)
    paths = [f"p{i:06d}.jpg" for i in range(len(matrix))]
    root = Path(__file__).parent  # unused by the backend: the index is built in memory
    index = PhotoIndex(root, root, _manifest(paths, 64), matrix)
    backend = ExactBackend(index)
    assert len(index) >= HALF_SCAN_ROWS
    for trial in range(12):
        query = base[trial] if trial % 3 == 0 else _unit_rows(1, 64, seed=100 + trial)[0]
        exclude = rng.random(len(matrix)) < 0.85 if trial % 2 else None
        for k in (1, 10, 50):
            ranking = backend.ranked(query, k, exclude)
            rows, withheld = _float64_ranking(matrix.astype(np.float32), query, k, exclude)
            got = [r.row for r in ranking.rows]
            reference = matrix.astype(np.float64) @ query.astype(np.float64)
            # Rows whose float64 scores tie within float32 rounding may swap places.
            np.testing.assert_allclose([r.score for r in ranking.rows], reference[got],
                                       atol=1e-5)
            np.testing.assert_allclose(reference[got], reference[rows], atol=1e-5)
            assert ranking.withheld == withheld
