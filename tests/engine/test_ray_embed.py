"""Distributed embedding on Ray Data, in local mode: the same vectors as the local pipeline."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.backends.base import photo_key
from engine.embedding_pipeline import embed_photos
from engine.encoders import load_encoder
from engine.index import scan_photos
from engine.ray_embed import (
    EmbeddingRows,
    RayNotInstalledError,
    embed_dataset,
    require_ray,
    write_embeddings,
)
from tests.engine.conftest import make_photo


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, ignore_reinit_error=True)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_vectors_equal_the_local_pipeline(local_ray: None, tiny_clip_spec: str,
                                              tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(7):
        make_photo(photos / "album" / f"{i}.jpg", (i * 30, 200 - i * 20, 90), stripe=i + 1)
    (photos / "broken.png").write_bytes(b"\x89PNG not really")

    written: list[EmbeddingRows] = []
    dataset = embed_dataset(photos, tiny_clip_spec, batch_size=3, actors=1)
    report = write_embeddings(dataset, written.append, batch_size=4)

    assert report.written == 7 and [p for p, _ in report.failed] == ["broken.png"]
    assert all(len(rows["key"]) <= 4 for rows in written)
    keys = np.concatenate([rows["key"] for rows in written])
    paths = np.concatenate([rows["path"] for rows in written]).tolist()
    vectors = np.concatenate([rows["vector"] for rows in written])
    assert keys.dtype == np.int64 and vectors.dtype == np.float32
    assert keys.tolist() == [photo_key(p) for p in paths]
    sizes = np.concatenate([rows["size"] for rows in written]).tolist()
    mtimes = np.concatenate([rows["mtime_ns"] for rows in written]).tolist()
    assert list(zip(sizes, mtimes, strict=True)) == [
        ((photos / p).stat().st_size, (photos / p).stat().st_mtime_ns) for p in paths]

    encoder = load_encoder(tiny_clip_spec)
    local = embed_photos(photos, list(scan_photos(photos).values()), encoder, batch_size=3,
                         workers=0, progress=False)
    expected = {p.path: v for p, v in zip(local.embedded, local.vectors, strict=True)}
    assert sorted(paths) == sorted(expected)
    for path, vector in zip(paths, vectors, strict=True):
        np.testing.assert_allclose(vector, expected[path], atol=1e-5)


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when not installed
    with pytest.raises(RayNotInstalledError, match=r"photo-search\[ray\]"):
        require_ray()
