"""Embedding many photos: decoding in worker processes, batched inference, crash checkpoints.

Why the pieces look the way they do:

- Decoding runs in separate processes (`decode_batch`, a top-level function so the `spawn`
  start method can pickle it). Workers only turn files into uint8 pixels of the encoder's
  `image_prep` size (JPEG draft decoding, EXIF orientation: `engine.images.open_photo`); they
  never import torch or load the model, so they start in a fraction of a second and cost no
  memory beyond a few batches of pixels. `spawn`, not `fork`: the parent holds torch's thread
  pools and, in the bot, an event loop and other threads, which a forked child would inherit
  in whatever state they were in.
- At most `prefetch` batches are decoded ahead of the model, so decoding overlaps inference
  without the decoded pixels piling up in memory when the model is the slow side (usually:
  a 224-px JPEG decodes in ~1.5 ms, a 12-MP one in ~13 ms, while the default model needs
  ~0.3 CPU-seconds a photo; but a 12-MP PNG, with no draft mode, takes ~380 ms, hence two
  workers by default). Idle workers cost nothing, so `workers` is an upper bound, not a CPU
  claim. Measured by `tests/bench/test_indexing_bench.py`, see docs/scale.md.
- Inference stays in the calling process, batched, with torch's own threads.
- Finished photos are checkpointed: every `ENGINE_CHECKPOINT_SECONDS` (and when the run
  stops on an exception, Ctrl-C included) the vectors embedded since the last checkpoint are
  written to `INDEX_DIR/.partial/<hash>/chunk-*.npz` (atomically: temp file, fsync, rename).
  A rerun after a crash, even a SIGKILL or a power cut, loads the chunks whose (size,
  mtime_ns) still match and embeds only the rest. `<hash>` covers the model name, the photo
  folder and the decoding recipe, so a run with another model never picks up foreign
  vectors. The index removes the directory once the new generation is written
  (`remove_checkpoint`).

Knobs (parameters, set from `EngineSettings` by the CLI):
- `checkpoint_seconds` (`ENGINE_CHECKPOINT_SECONDS`, default 10): how often finished photos
  are checkpointed; 0 checkpoints after every batch.
- `batch_delay` (`ENGINE_TEST_BATCH_DELAY`, tests only, default 0): seconds to sleep after
  each batch, so a test can kill an indexing process part-way deterministically.

Small runs (one batch or less) decode in the calling process: starting processes for a
handful of photos costs more than it saves.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from engine.images import ImagePrep, UnreadablePhotoError, open_photo

if TYPE_CHECKING:
    from engine.encoders.base import Encoder

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
# The environment variables behind those settings (`EngineSettings`), for subprocess tests.
CHECKPOINT_SECONDS_ENV = "ENGINE_CHECKPOINT_SECONDS"
TEST_BATCH_DELAY_ENV = "ENGINE_TEST_BATCH_DELAY"
DEFAULT_CHECKPOINT_SECONDS = 10.0


class PhotoLike(Protocol):
    """What the pipeline needs to know of a photo (`engine.index.PhotoFile` is one)."""

    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def mtime_ns(self) -> int: ...


P = TypeVar("P", bound=PhotoLike)


# ------------------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class DecodedBatch:
    """Pixels of the photos of one batch that decoded, and why the others did not.

    `ok[i]` is the position within the batch of `pixels[i]`; `errors` holds (position,
    message) of unreadable photos.
    """

    pixels: np.ndarray
    ok: list[int]
    errors: list[tuple[int, str]]


def decode_batch(photo_dir: str, paths: Sequence[str], prep: ImagePrep) -> DecodedBatch:
    """Decode `paths` (relative to `photo_dir`) into one uint8 (n, S, S, 3) array.

    Runs in worker processes: top-level and importable without torch, so `spawn` can start a
    worker cheaply. Unreadable photos are reported, never raised, so one bad file does not
    cost the rest of its batch.
    """
    size = prep.size
    pixels = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    ok: list[int] = []
    errors: list[tuple[int, str]] = []
    for position, relative in enumerate(paths):
        try:
            image = open_photo(Path(photo_dir) / relative, prep)
        except UnreadablePhotoError as error:
            errors.append((position, str(error)))
            continue
        pixels[len(ok)] = np.asarray(image, dtype=np.uint8)
        ok.append(position)
    return DecodedBatch(pixels[:len(ok)], ok, errors)


def _init_worker(parent: int) -> None:
    """Decoder start-up: leave Ctrl-C to the parent, and exit when the parent is gone.

    The parent handles Ctrl-C (it checkpoints and stops the pool); workers printing their own
    KeyboardInterrupt tracebacks would only add noise. A parent killed outright (SIGKILL, the
    OOM killer) cannot stop its pool, and a pool worker never sees its task pipe close (it
    holds both ends), so without the watchdog it would wait forever, holding the terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class _InlineExecutor(Executor):
    """Decodes at submit time in the calling process (small runs, or `workers=0`)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # surfaced by future.result(), like a pool would
            future.set_exception(error)
        return future


@contextmanager
def _decoder(workers: int, batches: int) -> Iterator[Executor]:
    """A process pool of up to `workers` decoders, or inline decoding for a single batch."""
    if workers <= 0 or batches <= 1:
        yield _InlineExecutor()
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, batches),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------- checkpoints


def checkpoint_dir(index_root: Path, encoder_name: str, photo_dir: Path, prep: ImagePrep
                   ) -> Path:
    """Where a run of this model over this folder keeps its finished photos."""
    identity = f"{encoder_name}\0{photo_dir.resolve()}\0{prep.size}:{prep.mode}"
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return index_root / PARTIAL_DIR / digest


def remove_checkpoint(index_root: Path, encoder: Encoder, photo_dir: Path) -> None:
    """Drop the checkpoints of a run whose generation is written (and `.partial` if empty)."""
    directory = checkpoint_dir(index_root, encoder.name, photo_dir, encoder.image_prep)
    shutil.rmtree(directory, ignore_errors=True)
    with suppress(OSError):
        directory.parent.rmdir()  # only succeeds when no other model's run left chunks


def _written_order(chunk: Path) -> tuple[int, str]:
    try:
        return (chunk.stat().st_mtime_ns, chunk.name)
    except OSError:
        return (0, chunk.name)


@dataclass
class _Finished:
    """What a checkpoint remembers of one photo: its signature and vector, or its error."""

    size: int
    mtime_ns: int
    vector: np.ndarray | None = None
    error: str | None = None


@dataclass
class Checkpoint:
    """Chunks of finished photos of one run, written atomically, read back on a rerun."""

    directory: Path
    dim: int
    _token: str = field(default_factory=lambda: secrets.token_hex(4))
    _written: int = 0
    _pending: list[tuple[PhotoLike, np.ndarray | None, str | None]] = field(
        default_factory=list)

    def load(self) -> dict[str, _Finished]:
        """Every photo finished by earlier runs, by path; the most recently written chunk
        wins (a photo changed between two crashed runs is in both). Chunks that cannot be
        read or do not fit the model's width are ignored with a warning."""
        finished: dict[str, _Finished] = {}
        if not self.directory.is_dir():
            return finished
        for chunk in sorted(self.directory.glob("chunk-*.npz"), key=_written_order):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    vectors = np.asarray(data["vectors"], dtype=np.float32)
                    if vectors.ndim != 2 or vectors.shape[1] != self.dim or \
                            not np.isfinite(vectors).all():
                        raise ValueError(f"vectors of shape {vectors.shape}")
                    for path, size, mtime, vector in zip(
                            data["paths"].tolist(), data["sizes"].tolist(),
                            data["mtimes"].tolist(), vectors, strict=True):
                        finished[path] = _Finished(int(size), int(mtime), vector=vector)
                    for path, size, mtime, error in zip(
                            data["failed_paths"].tolist(), data["failed_sizes"].tolist(),
                            data["failed_mtimes"].tolist(), data["errors"].tolist(),
                            strict=True):
                        finished[path] = _Finished(int(size), int(mtime), error=str(error))
            except (OSError, ValueError, KeyError) as error:
                log.warning("ignoring unreadable checkpoint %s: %s", chunk, error)
        return finished

    def add(self, photo: PhotoLike, vector: np.ndarray | None, error: str | None) -> None:
        self._pending.append((photo, vector, error))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Write the photos finished since the last flush as one chunk (temp file, fsync,
        rename: a crash leaves the chunk whole or absent). A failed write is logged, not
        raised: losing a checkpoint costs time on a rerun, never the run itself."""
        if not self._pending:
            return
        done = [(p, v) for p, v, _ in self._pending if v is not None]
        failed = [(p, e) for p, _, e in self._pending if e is not None]
        self._written += 1
        target = self.directory / f"chunk-{self._written:05d}-{self._token}.npz"
        temporary = target.with_name(target.name + ".tmp")
        arrays: dict[str, np.ndarray] = {
            "paths": np.array([p.path for p, _ in done], dtype=str),
            "sizes": np.array([p.size for p, _ in done], dtype=np.int64),
            "mtimes": np.array([p.mtime_ns for p, _ in done], dtype=np.int64),
            "vectors": (np.stack([v for _, v in done]).astype(np.float32) if done
                        else np.zeros((0, self.dim), np.float32)),
            "failed_paths": np.array([p.path for p, _ in failed], dtype=str),
            "failed_sizes": np.array([p.size for p, _ in failed], dtype=np.int64),
            "failed_mtimes": np.array([p.mtime_ns for p, _ in failed], dtype=np.int64),
            "errors": np.array([e for _, e in failed], dtype=str),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as error:
            log.warning("could not write checkpoint %s: %s", target, error)
            with suppress(OSError):
                temporary.unlink()
            return
        self._pending.clear()


# ------------------------------------------------------------------------------- the run


@dataclass
class EmbeddingRun(Generic[P]):
    """Result of `embed_photos`: `vectors[i]` is the embedding of `embedded[i]` (resumed and
    new photos, in input order), `failures` the unreadable photos and why."""

    vectors: np.ndarray
    embedded: list[P]
    failures: list[tuple[P, str]]
    resumed: int = 0



def embed_photos(photo_dir: Path, todo: Sequence[P], encoder: Encoder, *, batch_size: int = 32,
                 workers: int = 2, prefetch: int | None = None, progress: bool = True,
                 on_progress: Callable[[int, int], None] | None = None,
                 checkpoint: Path | None = None,
                 checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
                 batch_delay: float = 0.0) -> EmbeddingRun[P]:
    """Decode `todo` in worker processes and embed it in batches in this process.

    `workers` decoder processes (0: decode here); `prefetch` batches decoded ahead of the
    model (default `workers + 1`: one per worker plus the one the model needs next).
    `checkpoint` is the directory of this run's chunks (`checkpoint_dir`); photos finished
    there with the same signature are not embedded again. Unreadable photos land in
    `failures`; `on_progress(done, total)` is called after each batch.
    """
    dim = encoder.dim
    finished: dict[str, _Finished] = {}
    store: Checkpoint | None = None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, dim)
        if not todo:
            shutil.rmtree(checkpoint, ignore_errors=True)  # nothing left to resume
        else:
            finished = store.load()

    rows: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    pending: list[int] = []
    for position, photo in enumerate(todo):
        old = finished.get(photo.path)
        if old is None or (old.size, old.mtime_ns) != (photo.size, photo.mtime_ns):
            pending.append(position)
        elif old.vector is not None:
            rows[position] = old.vector
        else:
            errors[position] = old.error or "unreadable"
    resumed = len(todo) - len(pending)
    if resumed:
        log.info("resuming an interrupted run: %d photos from %s, %d to embed",
                 resumed, checkpoint, len(pending))

    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    interval = max(0.0, checkpoint_seconds)
    delay = max(0.0, batch_delay)
    depth = max(1, prefetch if prefetch is not None else workers + 1)
    prep = encoder.image_prep
    done = resumed
    last_flush = time.monotonic()
    with tqdm(total=len(todo), initial=resumed, desc="indexing", unit="photo",
              disable=not progress) as bar, _decoder(workers, len(batches)) as pool:
        if on_progress is not None and resumed:
            on_progress(done, len(todo))
        queue: deque[tuple[list[int], Future[DecodedBatch]]] = deque()
        upcoming = iter(batches)

        def submit() -> None:
            batch = next(upcoming, None)
            if batch is not None:
                queue.append((batch, pool.submit(decode_batch, str(photo_dir),
                                                 [todo[i].path for i in batch], prep)))

        try:
            for _ in range(depth):
                submit()
            while queue:
                batch, future = queue.popleft()
                decoded = future.result()
                submit()  # keep the decoders busy while the model works on this batch
                vectors = (encoder.encode_pixels(decoded.pixels) if decoded.ok
                           else np.zeros((0, dim), np.float32))
                for offset, vector in zip(decoded.ok, vectors, strict=True):
                    rows[batch[offset]] = vector
                    if store is not None:
                        store.add(todo[batch[offset]], vector, None)
                for offset, message in decoded.errors:
                    errors[batch[offset]] = message
                    log.warning("skipped unreadable photo %s: %s", todo[batch[offset]].path,
                                message)
                    if store is not None:
                        store.add(todo[batch[offset]], None, message)
                done += len(batch)
                bar.update(len(batch))
                if on_progress is not None:
                    on_progress(done, len(todo))
                if store is not None and time.monotonic() - last_flush >= interval:
                    store.flush()
                    last_flush = time.monotonic()
                if delay:
                    time.sleep(delay)
        finally:
            if store is not None:
                store.flush()  # also on errors and Ctrl-C: the next run resumes from here

    order = [i for i in range(len(todo)) if i in rows]
    matrix = (np.stack([rows[i] for i in order]).astype(np.float32) if order
              else np.zeros((0, dim), np.float32))
    return EmbeddingRun(matrix, [todo[i] for i in order],
                        [(todo[i], errors[i]) for i in sorted(errors)], resumed)
