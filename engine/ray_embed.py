"""Embedding a collection too large for one machine with Ray Data (optional extra `ray`).

The same work as the local pipeline (`engine.embedding_pipeline`), spread over a cluster:
a `ray.data` dataset of photo paths flows through an actor pool; each actor loads the encoder
once (from its model spec string, so nothing large is pickled) and turns a batch of paths
into vectors with the very same `decode_batch` and `encode_pixels`, so a vector computed on
the cluster equals the one a local `python -m engine index` computes. `write_embeddings`
then streams the result, in batches, into any sink: a Milvus collection's insert, a file
writer, a test's list. Rows are keyed by `photo_key(relative path)`, the key every
persistent backend uses, so a re-run upserts instead of duplicating.

Install with `pip install 'photo-search[ray]'`; nothing here imports Ray until it is used.
See docs/scale.md for a cluster run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import photo_keys
from engine.embedding_pipeline import decode_batch

log = logging.getLogger(__name__)

RAY_EXTRA = "photo-search[ray]"

#: One written batch: `key` int64 (N,), `path` str (N,), `size` and `mtime_ns` int64 (N,)
#: (the file signature, taken before reading), `vector` float32 (N, dim).
EmbeddingRows = dict[str, np.ndarray]
Sink = Callable[[EmbeddingRows], None]


class RayNotInstalledError(ImportError):
    """Ray is an optional extra; the message says how to install it."""


def require_ray() -> Any:
    """Import Ray (and Ray Data) or explain which extra brings it."""
    try:
        import ray
        import ray.data  # Ray Data is an extra of Ray itself: check it too
    except ImportError as error:
        raise RayNotInstalledError(
            f"distributed indexing needs Ray Data: pip install '{RAY_EXTRA}' "
            f"(or pip install 'ray[data]'); missing: {error.name or error}") from error
    return ray


class EmbedPhotos:
    """The `map_batches` callable: one encoder per actor, loaded when the actor starts.

    `photo_dir` must be the same path on every node (a shared or mounted file system); the
    dataset carries paths relative to it. Unreadable photos come back with an `error` and a
    zero vector rather than failing the batch, as in local indexing.
    """

    def __init__(self, model_spec: str, photo_dir: str, torch_threads: int | None = None) -> None:
        from engine.encoders import load_encoder

        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.encoder = load_encoder(model_spec)
        self.photo_dir = photo_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        signatures = np.zeros((len(paths), 2), dtype=np.int64)  # before reading: a file
        for row, relative in enumerate(paths):                   # changed later is stale
            try:
                stat = os.stat(os.path.join(self.photo_dir, relative))
            except OSError:
                continue  # decoding reports it
            signatures[row] = (stat.st_size, stat.st_mtime_ns)
        decoded = decode_batch(self.photo_dir, paths, self.encoder.image_prep)
        vectors = np.zeros((len(paths), self.encoder.dim), dtype=np.float32)
        if decoded.ok:
            vectors[decoded.ok] = self.encoder.encode_pixels(decoded.pixels)
        errors = [""] * len(paths)
        for position, message in decoded.errors:
            errors[position] = message
        return {"key": photo_keys(paths), "path": np.array(paths, dtype=object),
                "size": signatures[:, 0], "mtime_ns": signatures[:, 1],
                "vector": vectors, "error": np.array(errors, dtype=object)}


def embed_dataset(photo_dir: Path, model_spec: str, paths: Sequence[str] | None = None, *,
                  batch_size: int = 32, actors: int | tuple[int, int] = 1,
                  cpus_per_actor: float = 1.0,
                  torch_threads: int | None = None) -> Any:
    """A lazy `ray.data.Dataset` of key/path/size/mtime_ns/vector/error rows for the photos
    under `photo_dir`.

    `paths` are relative to `photo_dir` (default: every photo `scan_photos` finds, listed on
    the driver). `actors` is the actor pool size, or (min, max) to let Ray autoscale it;
    each actor reserves `cpus_per_actor` CPUs (torch uses as many threads, unless
    `torch_threads` says otherwise) and holds one model; the encoders run on CPU.
    Nothing runs until the dataset is consumed (`write_embeddings`, `materialize`, ...).
    """
    ray = require_ray()
    if paths is None:
        from engine.index import scan_photos

        paths = list(scan_photos(photo_dir))
    items = [{"path": p} for p in paths]
    dataset = ray.data.from_items(items)
    return dataset.map_batches(
        EmbedPhotos,
        fn_constructor_kwargs={"model_spec": model_spec, "photo_dir": str(photo_dir),
                               "torch_threads": torch_threads or max(1, int(cpus_per_actor))},
        batch_size=batch_size, batch_format="numpy", concurrency=actors,
        num_cpus=cpus_per_actor)


@dataclass
class WriteReport:
    """What `write_embeddings` passed to the sink, and the photos it could not read."""

    written: int = 0
    batches: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def write_embeddings(dataset: Any, sink: Sink, *, batch_size: int = 1024) -> WriteReport:
    """Stream the rows of `embed_dataset` into `sink`, `batch_size` rows per call.

    Readable photos only; unreadable ones are listed in the report (and logged) instead.
    The sink sees `EmbeddingRows` (`key`, `path`, `size`, `mtime_ns`, `vector`); see
    docs/scale.md for one that upserts into a Milvus collection.
    """
    report = WriteReport()
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        errors = np.asarray(batch["error"]).astype(str)
        ok = errors == ""
        for path, message in zip(np.asarray(batch["path"])[~ok], errors[~ok], strict=True):
            report.failed.append((str(path), str(message)))
            log.warning("skipped unreadable photo %s: %s", path, message)
        if not ok.any():
            continue
        rows: EmbeddingRows = {
            "key": np.asarray(batch["key"], dtype=np.int64)[ok],
            "path": np.asarray(batch["path"]).astype(str)[ok],
            "size": np.asarray(batch["size"], dtype=np.int64)[ok],
            "mtime_ns": np.asarray(batch["mtime_ns"], dtype=np.int64)[ok],
            "vector": np.asarray(batch["vector"], dtype=np.float32)[ok],
        }
        sink(rows)
        report.written += int(ok.sum())
        report.batches += 1
    return report
