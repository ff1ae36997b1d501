"""The indexing pipeline: worker-process decoding, checkpoints, resuming after a crash."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.embedding_pipeline import (
    CHECKPOINT_SECONDS_ENV,
    PARTIAL_DIR,
    TEST_BATCH_DELAY_ENV,
    checkpoint_dir,
    decode_batch,
    embed_photos,
)
from engine.encoders.base import Encoder
from engine.images import ImagePrep
from engine.index import PhotoIndex, scan_photos, update_index
from tests.engine.conftest import make_photo

REPO = Path(__file__).resolve().parents[2]


def _photos(root: Path, count: int) -> Path:
    for i in range(count):
        make_photo(root / f"p{i:02d}.jpg", ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256),
                   stripe=1 + i % 7)
    return root


class _Counting:
    """An encoder that counts the photos it embeds (and can stop after some batches)."""

    def __init__(self, inner: Encoder, fail_after: int | None = None) -> None:
        self.inner, self.photos, self.calls, self.fail_after = inner, 0, 0, fail_after
        self.name, self.dim, self.image_prep = inner.name, inner.dim, inner.image_prep

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.photos += len(pixels)
        return self.inner.encode_pixels(pixels)


def test_decode_batch_reports_unreadable_photos(tmp_path: Path) -> None:
    make_photo(tmp_path / "a.jpg", (200, 10, 10), size=(640, 480))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    make_photo(tmp_path / "c.png", (10, 10, 200))
    batch = decode_batch(str(tmp_path), ["a.jpg", "bad.jpg", "c.png"], ImagePrep(40))
    assert batch.pixels.shape == (2, 40, 40, 3) and batch.pixels.dtype == np.uint8
    assert batch.ok == [0, 2]
    assert [pos for pos, _ in batch.errors] == [1] and "bad.jpg" in batch.errors[0][1]


def test_worker_processes_give_the_same_vectors_as_inline_decoding(
        tiny_encoder: Encoder, tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 9)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    todo = list(scan_photos(photos).values())
    inline = embed_photos(photos, todo, tiny_encoder, batch_size=4, workers=0, progress=False)
    seen: list[tuple[int, int]] = []
    pooled = embed_photos(photos, todo, tiny_encoder, batch_size=4, workers=2, progress=False,
                          on_progress=lambda done, total: seen.append((done, total)))
    assert [p.path for p in pooled.embedded] == [p.path for p in inline.embedded]
    assert len(pooled.embedded) == 9
    np.testing.assert_allclose(pooled.vectors, inline.vectors, atol=1e-6)
    assert [p.path for p, _ in pooled.failures] == ["broken.jpg"]
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_ctrl_c_checkpoints_and_the_next_run_resumes(tiny_encoder: Encoder, tmp_path: Path
                                                     ) -> None:
    photos = _photos(tmp_path / "photos", 10)
    root = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        update_index(photos, root, _Counting(tiny_encoder, fail_after=3),  # type: ignore[arg-type]
                     batch_size=2, workers=1, progress=False)
    partial = checkpoint_dir(root, tiny_encoder.name, photos.resolve(), tiny_encoder.image_prep)
    assert list(partial.glob("chunk-*.npz")), "the interrupted run left no checkpoint"
    assert not (root / "CURRENT").exists()

    again = _Counting(tiny_encoder)
    report = update_index(photos, root, again, batch_size=2, workers=1,  # type: ignore[arg-type]
                          progress=False)
    assert again.photos == 4 and report.embedded == 4 and report.total == 10
    assert not (root / PARTIAL_DIR).exists(), "checkpoints outlived the generation"
    clean = tmp_path / "clean"
    update_index(photos, clean, tiny_encoder, progress=False)
    resumed, fresh = PhotoIndex.open(root), PhotoIndex.open(clean)
    assert resumed.paths == fresh.paths
    np.testing.assert_allclose(np.asarray(resumed.embeddings), np.asarray(fresh.embeddings),
                               atol=1e-6)


def test_checkpoints_of_changed_photos_are_not_reused(tiny_encoder: Encoder, tmp_path: Path
                                                      ) -> None:
    photos = _photos(tmp_path / "photos", 6)
    root = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        update_index(photos, root, _Counting(tiny_encoder, fail_after=2),  # type: ignore[arg-type]
                     batch_size=2, workers=0, progress=False)
    make_photo(photos / "p00.jpg", (1, 2, 3), size=(70, 50))  # checkpointed, then changed
    again = _Counting(tiny_encoder)
    update_index(photos, root, again, batch_size=2, workers=0,  # type: ignore[arg-type]
                 progress=False)
    assert again.photos == 3
    index = PhotoIndex.open(root)
    expected = tiny_encoder.encode_pixels(
        decode_batch(str(photos), ["p00.jpg"], tiny_encoder.image_prep).pixels)[0]
    np.testing.assert_allclose(np.asarray(index.embeddings[index.row("p00.jpg")]), expected,
                               atol=1e-6)


def _cli(args: list[str], output: int = subprocess.PIPE, **env_extra: str
         ) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(PYTHONPATH=str(REPO), ENGINE_CHILD_FILTER="off", **env_extra)
    return subprocess.Popen([sys.executable, "-m", "engine", "-v", *args], cwd=REPO, env=env,
                            stdout=output, stderr=output, text=True)


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (Linux /proc; empty elsewhere)."""
    listing = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in listing.read_text().split()] if listing.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _chunk_rows(directory: Path) -> int:
    rows = 0
    for chunk in directory.glob("*/chunk-*.npz"):
        with np.load(chunk) as data:
            rows += len(data["paths"]) + len(data["failed_paths"])
    return rows


def test_sigkilled_index_run_resumes_without_reembedding(tiny_clip_spec: str, tmp_path: Path
                                                         ) -> None:
    """A real `python -m engine index` killed with SIGKILL mid-run; the rerun embeds only the
    photos no checkpoint holds, and the index equals a clean run's."""
    photos = _photos(tmp_path / "photos", 12)
    root = tmp_path / "idx"
    args = ["index", str(photos), "--index", str(root), "--model", tiny_clip_spec,
            "--batch-size", "2", "--workers", "1", "--quiet"]
    slow = {CHECKPOINT_SECONDS_ENV: "0", TEST_BATCH_DELAY_ENV: "1"}
    # Output to /dev/null: had a decoder outlived the kill, a pipe would block the test.
    victim = _cli(args, output=subprocess.DEVNULL, **slow)
    partial = root / PARTIAL_DIR
    deadline = time.monotonic() + 120
    while not list(partial.glob("*/chunk-*.npz")):
        assert victim.poll() is None, f"the run ended with {victim.returncode} before a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    decoders = _children(victim.pid)
    assert decoders or not Path("/proc").is_dir(), "12 photos in 6 batches: a decoder pool"
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 10  # decoder processes notice the parent is gone and exit
    while any(_alive(pid) for pid in decoders) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in decoders), "decoder processes outlived the kill"
    checkpointed = _chunk_rows(partial)
    assert 0 < checkpointed < 12
    assert not (root / "CURRENT").exists()

    out, err = _cli(args).communicate(timeout=300)
    assert f"embedded {12 - checkpointed} photos" in out, (out, err)
    assert "12 photos (12 added" in out
    assert re.search(rf"resuming an interrupted run: {checkpointed} photos", err), err
    assert not partial.exists()

    clean = tmp_path / "clean"
    out, err = _cli(["index", str(photos), "--index", str(clean), "--model", tiny_clip_spec,
                     "--quiet"]).communicate(timeout=300)
    assert "embedded 12 photos" in out, (out, err)
    resumed, fresh = PhotoIndex.open(root), PhotoIndex.open(clean)
    assert resumed.paths == fresh.paths
    np.testing.assert_allclose(np.asarray(resumed.embeddings), np.asarray(fresh.embeddings),
                               atol=1e-5)
