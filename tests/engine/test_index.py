"""The photo index: incremental updates, broken files, crash safety, model identity."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from engine.encoders.base import Encoder, encode_images
from engine.images import ImagePrep
from engine.index import (
    IndexModelMismatchError,
    IndexNotFoundError,
    PhotoDirNotFoundError,
    PhotoIndex,
    update_index,
)

from .conftest import make_photo


def _touch_later(path: Path) -> None:
    """Change a file's mtime for sure, even on coarse-timestamp filesystems."""
    later = time.time() + 5
    os.utime(path, (later, later))


def test_first_run_embeds_every_photo(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path
                                      ) -> None:
    report = update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    assert (report.added, report.updated, report.removed, report.unchanged) == (6, 0, 0, 0)
    index = PhotoIndex.open(tmp_path / "idx")
    assert sorted(index.paths) == sorted([
        "red.jpg", "green.png", "blue.webp", "trips/yellow.jpg", "trips/grey.JPG",
        "trips/white.jpeg"])
    assert index.model == tiny_encoder.name and index.dim == tiny_encoder.dim
    # Stored rows are exactly what the encoder gives for those files.
    expected = encode_images(tiny_encoder, [photo_dir / p for p in index.paths])
    np.testing.assert_allclose(np.asarray(index.embeddings), expected, atol=1e-5)


def test_second_run_only_touches_what_changed(tiny_encoder: Encoder, photo_dir: Path,
                                              tmp_path: Path) -> None:
    root = tmp_path / "idx"
    update_index(photo_dir, root, tiny_encoder, progress=False)
    unchanged = update_index(photo_dir, root, tiny_encoder, progress=False)
    assert (unchanged.added, unchanged.updated, unchanged.removed, unchanged.unchanged) == \
        (0, 0, 0, 6)

    make_photo(photo_dir / "red.jpg", (10, 10, 240), stripe=3)  # same name, new content
    _touch_later(photo_dir / "red.jpg")
    (photo_dir / "green.png").unlink()
    make_photo(photo_dir / "new" / "orange.jpg", (250, 140, 0))
    report = update_index(photo_dir, root, tiny_encoder, progress=False)
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 4)

    index = PhotoIndex.open(root)
    assert "green.png" not in index.paths and "new/orange.jpg" in index.paths
    row = index.row("red.jpg")
    assert row is not None
    fresh = encode_images(tiny_encoder, [photo_dir / "red.jpg"])[0]
    np.testing.assert_allclose(index.embeddings[row], fresh, atol=1e-5)
    assert len(list(root.glob("gen-*"))) == 1  # old generations are cleaned up


def test_unreadable_files_are_skipped_and_listed(tiny_encoder: Encoder, photo_dir: Path,
                                                 tmp_path: Path) -> None:
    (photo_dir / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (photo_dir / "empty.png").write_bytes(b"")
    report = update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    assert sorted(s.path for s in report.skipped) == ["corrupt.jpg", "empty.png"]
    assert report.added == 6 and report.total == 6
    assert "corrupt.jpg" not in PhotoIndex.open(tmp_path / "idx").paths
    # Unchanged broken files are reported again but not retried; a fixed one gets indexed.
    make_photo(photo_dir / "empty.png", (1, 2, 3))
    _touch_later(photo_dir / "empty.png")
    again = update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    assert [s.path for s in again.skipped] == ["corrupt.jpg"]
    assert again.added == 1 and "empty.png" in PhotoIndex.open(tmp_path / "idx").paths


class _FailsAfter:
    """Wraps a real encoder and dies after `batches` batches, like a killed process."""

    def __init__(self, inner: Encoder, batches: int) -> None:
        self.inner, self.left = inner, batches
        self.name, self.dim = inner.name, inner.dim

    @property
    def image_prep(self) -> ImagePrep:
        return self.inner.image_prep

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner.encode_pixels(pixels)


def test_interrupted_update_leaves_previous_index_usable(tiny_encoder: Encoder, photo_dir: Path,
                                                         tmp_path: Path) -> None:
    root = tmp_path / "idx"
    update_index(photo_dir, root, tiny_encoder, progress=False)
    before = PhotoIndex.open(root)
    paths_before, matrix_before = list(before.paths), np.array(before.embeddings)
    for i in range(5):
        make_photo(photo_dir / "more" / f"{i}.jpg", (i * 40, 100, 100))
    with pytest.raises(KeyboardInterrupt):
        update_index(photo_dir, root, _FailsAfter(tiny_encoder, 1), batch_size=2, progress=False)
    after = PhotoIndex.open(root)
    assert after.paths == paths_before
    np.testing.assert_array_equal(np.asarray(after.embeddings), matrix_before)
    # The next normal run finishes the job.
    report = update_index(photo_dir, root, tiny_encoder, progress=False)
    assert report.added == 5 and len(PhotoIndex.open(root)) == 11


def test_top_k_orders_and_excludes(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path
                                   ) -> None:
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    index = PhotoIndex.open(tmp_path / "idx")
    query = np.asarray(index.embeddings[index.row("blue.webp")])
    ranked = index.top_k(query, 3)
    assert index.paths[ranked[0][0]] == "blue.webp"
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    exclude = np.zeros(len(index), dtype=bool)
    exclude[index.row("blue.webp")] = True
    assert all(index.paths[r] != "blue.webp" for r, _ in index.top_k(query, 6, exclude))
    assert len(index.top_k(query, 6, exclude)) == 5
    assert len(index.top_k(query, 100)) == 6


def test_errors_a_user_can_fix(tiny_encoder: Encoder, photo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index"):
        PhotoIndex.open(tmp_path / "missing")
    with pytest.raises(PhotoDirNotFoundError):
        update_index(tmp_path / "no-photos", tmp_path / "idx", tiny_encoder, progress=False)
    update_index(photo_dir, tmp_path / "idx", tiny_encoder, progress=False)
    with pytest.raises(IndexModelMismatchError, match="re-index"):
        PhotoIndex.open(tmp_path / "idx").require_model("some-other-model@2")


def test_empty_folder_gives_an_empty_index(tiny_encoder: Encoder, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = update_index(tmp_path / "empty", tmp_path / "idx", tiny_encoder, progress=False)
    index = PhotoIndex.open(tmp_path / "idx")
    assert report.total == 0 and len(index) == 0
    assert index.top_k(np.ones(tiny_encoder.dim, np.float32), 5) == []
