"""`make bench`: indexing throughput of the default model against its raw forward rate.

Prints (never asserts timings), all measured in one process on the same machine, in
alternating rounds (other load on a shared machine drifts over minutes and so falls on every
way alike), as wall-clock photos/s and as photos per CPU-second (this process and its decoder
processes; steadier when others share the machine):
- raw rate: `encode_pixels` over pre-decoded batches in a loop (no decoding, no files), the
  most the pipeline could reach;
- pipeline rate: `update_index` over folders of real photos (Flickr8k `images_224`, linked
  into temporary folders): worker-process decoding, batched inference, checkpoints;
- the ratio pipeline / raw (the target is >= 0.90);
- the same with the previous thread-pool decoder, for comparison (`BENCH_INDEX_THREADS=0`
  skips it).

`BENCH_INDEX_PHOTOS` (default 512) sets the folder size. Needs the shared data
(`SHARED_DATA`, default ../shared/data); skipped without it.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from engine.encoders import load_encoder
from engine.encoders.base import Encoder
from engine.images import UnreadablePhotoError, open_photo, to_array
from engine.index import update_index
from engine.settings import EngineSettings
from training.benchmark import link_photos

pytestmark = pytest.mark.bench

SHARED = Path(os.environ.get("SHARED_DATA", "../shared/data"))
PHOTOS = int(os.environ.get("BENCH_INDEX_PHOTOS", "512"))
ROUNDS = 4


@pytest.fixture(scope="module")
def flickr_photos() -> list[Path]:
    folder = SHARED / "flickr8k" / "images_224"
    if not folder.is_dir():
        pytest.skip(f"Flickr8k photos not found at {folder} (set SHARED_DATA)")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")[:PHOTOS]
    if len(photos) < 64:
        pytest.skip(f"only {len(photos)} photos at {folder}")
    return photos


@dataclass
class Meter:
    """Photos, wall seconds and CPU seconds (this process and its reaped children) of one
    way of embedding, summed over rounds."""

    photos: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def measure(self, photos: int) -> Iterator[None]:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        yield
        self.wall += time.perf_counter() - wall
        self.cpu += _cpu_seconds() - cpu
        self.photos += photos

    @property
    def rate(self) -> float:
        return self.photos / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.photos / self.cpu


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_embed(encoder: Encoder, batches: Sequence[np.ndarray]) -> None:
    """The forward pass alone, over already decoded batches: what the pipeline could reach."""
    for pixels in batches:
        encoder.encode_pixels(pixels)


def thread_pool_embed(encoder: Encoder, photos: Sequence[Path], batch_size: int, workers: int
                      ) -> None:
    """The indexer before the process pipeline: decode on threads, embed each batch as it
    comes (kept here only to compare against)."""
    prep = encoder.image_prep

    def decode(chunk: Sequence[Path]) -> list[object]:
        out: list[object] = []
        for path in chunk:
            try:
                out.append(open_photo(path, prep))
            except UnreadablePhotoError as error:
                out.append(error)
        return out

    def chunks() -> Iterator[Sequence[Path]]:
        for start in range(0, len(photos), batch_size):
            yield photos[start:start + batch_size]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for images in pool.map(decode, chunks()):
            good = [im for im in images if not isinstance(im, Exception)]
            encoder.encode_pixels(to_array(good))  # type: ignore[arg-type]


def test_indexing_throughput(flickr_photos: list[Path], tmp_path: Path) -> None:
    import torch

    settings = EngineSettings()
    batch_size, workers = settings.batch_size, settings.workers
    compare_threads = os.environ.get("BENCH_INDEX_THREADS", "1") != "0"
    encoder = load_encoder("dual:default")
    prep = encoder.image_prep
    per_round = -(-len(flickr_photos) // ROUNDS)
    raw_count = max(batch_size, (per_round // 2) // batch_size * batch_size)
    pixels = to_array(open_photo(p, prep) for p in flickr_photos[:raw_count])
    batches = [pixels[i:i + batch_size] for i in range(0, len(pixels), batch_size)]
    encoder.encode_pixels(batches[0])  # load the towers: not part of any rate

    # Rounds alternate the ways of embedding, so load from other processes on a shared
    # machine, which drifts over minutes, falls on all of them alike.
    raw, pipeline, threads = Meter(), Meter(), Meter()
    embedded = 0
    for number in range(ROUNDS):
        share = flickr_photos[number * per_round:(number + 1) * per_round]
        if not share:
            break
        with raw.measure(len(pixels)):
            raw_embed(encoder, batches)
        folder = link_photos(share, tmp_path / f"photos-{number}")
        with pipeline.measure(len(share)):
            report = update_index(folder, tmp_path / f"idx-{number}", encoder,
                                  model_spec="dual:default", batch_size=batch_size,
                                  workers=workers, progress=False)
        embedded += report.embedded
        if compare_threads:
            with threads.measure(len(share[:raw_count])):
                thread_pool_embed(encoder, share[:raw_count], batch_size, workers)

    lines = ["", "== Indexing benchmark: dual:default, "
             f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
             f"batch {batch_size}, decode workers {workers}, {ROUNDS} alternating rounds ==",
             f"{'':<46} {'photos':>6} {'photos/s':>9} {'of raw':>7} {'photos/CPU-s':>13}",
             f"{'raw image tower (encode_pixels, pre-decoded)':<46} {raw.photos:6d} "
             f"{raw.rate:9.2f} {1:7.3f} {raw.cpu_rate:13.2f}",
             f"{'pipeline (update_index: processes, checkpoints)':<46} {pipeline.photos:6d} "
             f"{pipeline.rate:9.2f} {pipeline.rate / raw.rate:7.3f} "
             f"{pipeline.cpu_rate:13.2f}"]
    if compare_threads:
        lines.append(f"{'previous thread-pool decoder':<46} {threads.photos:6d} "
                     f"{threads.rate:9.2f} {threads.rate / raw.rate:7.3f} "
                     f"{threads.cpu_rate:13.2f}")
    lines.append(f"target: pipeline >= 0.90 of raw; measured {pipeline.rate / raw.rate:.3f} "
                 f"(wall), {pipeline.cpu_rate / raw.cpu_rate:.3f} (CPU time)")
    print("\n".join(lines))
    assert embedded == len(flickr_photos)
