"""The embedded photo index: one directory with the embeddings and metadata of a collection.

Layout::

    INDEX_DIR/CURRENT            name of the live generation (replaced atomically)
    INDEX_DIR/gen-000007/
        manifest.json            model, dim, photo folder, per-photo path/size/mtime, skipped files
        embeddings.npy           float32 (N, dim), rows L2-normalised, memory-mapped on open

An update writes a complete new generation beside the live one and only then swaps `CURRENT`,
so a crash or Ctrl-C mid-run leaves the previous index usable. Photos are identified by their
path relative to the photo folder; size and modification time tell whether a file changed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.encoders.base import Encoder
from engine.images import UnreadablePhotoError, is_photo_path, open_photo, to_array

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"


class IndexError_(Exception):
    """Base class of index problems a user can fix (named to avoid the builtin)."""


class IndexNotFoundError(IndexError_):
    pass


class IndexModelMismatchError(IndexError_):
    pass


class PhotoDirNotFoundError(IndexError_):
    pass


@dataclass(frozen=True)
class PhotoFile:
    """A photo as the scanner sees it: relative path, size, modification time."""

    path: str
    size: int
    mtime_ns: int

    def signature(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


@dataclass(frozen=True)
class SkippedPhoto:
    path: str
    size: int
    mtime_ns: int
    error: str


@dataclass
class UpdateReport:
    """What an index update did; `skipped` lists unreadable files (the run still succeeds)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[SkippedPhoto] = field(default_factory=list)
    total: int = 0
    embedded: int = 0
    embed_seconds: float = 0.0

    @property
    def photos_per_second(self) -> float:
        """Decode + embed rate of this run (0 when nothing was embedded)."""
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def scan_photos(photo_dir: Path) -> dict[str, PhotoFile]:
    """JPEG/PNG/WebP files under `photo_dir` (hidden ones skipped), keyed by relative path."""
    if not photo_dir.is_dir():
        raise PhotoDirNotFoundError(f"photo directory does not exist: {photo_dir}")
    found: dict[str, PhotoFile] = {}
    for root, dirs, files in os.walk(photo_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            full = Path(root) / name
            if not is_photo_path(full):
                continue
            try:
                stat = full.stat()
            except OSError:
                continue
            relative = full.relative_to(photo_dir).as_posix()
            found[relative] = PhotoFile(relative, stat.st_size, stat.st_mtime_ns)
    return found


class PhotoIndex:
    """A read-only view of the live generation of an index directory."""

    def __init__(self, root: Path, generation: Path, manifest: dict[str, Any],
                 embeddings: np.ndarray) -> None:
        self.root = root
        self.generation = generation
        self.manifest = manifest
        self.embeddings = embeddings
        self.paths: list[str] = [p["path"] for p in manifest["photos"]]
        self._row_of = {path: row for row, path in enumerate(self.paths)}

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path) -> PhotoIndex:
        """Open the live generation; raises `IndexNotFoundError` when there is none."""
        pointer = root / CURRENT
        if not pointer.is_file():
            raise IndexNotFoundError(f"no index at {root} (build one with "
                                     f"`python -m engine index PHOTO_DIR --index {root}`)")
        generation = root / pointer.read_text(encoding="utf-8").strip()
        manifest = json.loads((generation / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexNotFoundError(f"index at {root} has unknown format "
                                     f"{manifest.get('format')!r}; rebuild it")
        if manifest["photos"]:
            embeddings = np.load(generation / "embeddings.npy", mmap_mode="r")
        else:
            embeddings = np.zeros((0, int(manifest["dim"])), dtype=np.float32)
        return cls(root, generation, manifest, embeddings)

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def photo_dir(self) -> Path:
        return Path(self.manifest["photo_dir"])

    def __len__(self) -> int:
        return len(self.paths)

    def row(self, path: str) -> int | None:
        return self._row_of.get(path)

    def require_model(self, model_name: str) -> None:
        """Refuse to search with a model other than the one that built the index."""
        if model_name != self.model:
            raise IndexModelMismatchError(
                f"index at {self.root} was built with model {self.model!r} but the search uses "
                f"{model_name!r}; re-index: python -m engine index {self.photo_dir} "
                f"--index {self.root} --model <spec>")

    # -- search --------------------------------------------------------------------------
    def top_k(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
              ) -> list[tuple[int, float]]:
        """The `k` best rows for one query vector as (row, score), best first.

        `exclude` is a boolean mask over rows (True = never return); the matrix is not copied.
        """
        if len(self.paths) == 0 or k <= 0:
            return []
        scores = np.asarray(self.embeddings @ np.asarray(query, dtype=np.float32))
        if exclude is not None:
            scores = np.where(exclude, -np.inf, scores)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(row), float(scores[row])) for row in top if np.isfinite(scores[row])]


# ------------------------------------------------------------------------------- updating


def update_index(photo_dir: Path, root: Path, encoder: Encoder, *, model_spec: str | None = None,
                 batch_size: int = 32,
                 workers: int = 2, progress: bool = True,
                 on_progress: Callable[[int, int], None] | None = None) -> UpdateReport:
    """Bring the index at `root` in line with `photo_dir`: embed new/changed, drop deleted.

    A run with another model (or another photo folder) than the live index re-embeds
    everything. Unreadable photos are skipped and reported; they are not retried until the
    file changes.
    """
    photo_dir = photo_dir.resolve()
    found = scan_photos(photo_dir)
    previous = _open_previous(root, encoder, photo_dir)
    old_rows: dict[str, tuple[int, tuple[int, int]]] = {}
    old_skipped: dict[str, SkippedPhoto] = {}
    if previous is not None:
        for row, photo in enumerate(previous.manifest["photos"]):
            old_rows[photo["path"]] = (row, (int(photo["size"]), int(photo["mtime_ns"])))
        for item in previous.manifest.get("skipped", []):
            old_skipped[item["path"]] = SkippedPhoto(**item)

    report = UpdateReport()
    keep: list[tuple[PhotoFile, int]] = []
    todo: list[PhotoFile] = []
    for photo in found.values():
        old = old_rows.get(photo.path)
        if old is not None and old[1] == photo.signature():
            keep.append((photo, old[0]))
            report.unchanged += 1
            continue
        stale_skip = old_skipped.get(photo.path)
        if stale_skip is not None and (stale_skip.size, stale_skip.mtime_ns) == photo.signature():
            report.skipped.append(stale_skip)
            continue
        todo.append(photo)
        if old is not None:
            report.updated += 1
        else:
            report.added += 1
    report.removed = sum(1 for path in old_rows if path not in found)

    started = time.perf_counter()
    new_vectors, embedded, failures = _embed(photo_dir, todo, encoder, batch_size, workers,
                                             progress, on_progress)
    report.embed_seconds = time.perf_counter() - started
    report.embedded = len(embedded)
    report.added -= sum(1 for f in failures if f.path not in old_rows)
    report.updated -= sum(1 for f in failures if f.path in old_rows)
    report.skipped.extend(failures)
    report.total = len(keep) + len(embedded)

    if previous is not None and not report.changed and not failures and \
            len(report.skipped) == len(previous.manifest.get("skipped", [])):
        return report  # nothing to write: the live generation is already current

    photos = [p for p, _ in keep] + embedded
    parts = []
    if keep:
        assert previous is not None
        parts.append(np.asarray(previous.embeddings[[row for _, row in keep]], dtype=np.float32))
    if embedded:
        parts.append(new_vectors)
    matrix = (np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32))
    order = np.argsort([p.path for p in photos], kind="stable")
    photos = [photos[i] for i in order]
    matrix = matrix[order] if len(order) else matrix
    manifest = {
        "format": FORMAT_VERSION,
        "model": encoder.name,
        "model_spec": model_spec,
        "dim": encoder.dim,
        "photo_dir": str(photo_dir),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "photos": [{"path": p.path, "size": p.size, "mtime_ns": p.mtime_ns} for p in photos],
        "skipped": [s.__dict__ for s in sorted(report.skipped, key=lambda s: s.path)],
    }
    write_generation(root, manifest, matrix)
    return report


def _open_previous(root: Path, encoder: Encoder, photo_dir: Path) -> PhotoIndex | None:
    """The live index when it can be reused (same model, same folder), else None."""
    try:
        previous = PhotoIndex.open(root)
    except IndexNotFoundError:
        return None
    if previous.model != encoder.name:
        log.warning("index model %s differs from %s: re-embedding every photo",
                    previous.model, encoder.name)
        return None
    if previous.photo_dir != photo_dir:
        log.warning("index was built from %s, now %s: re-embedding every photo",
                    previous.photo_dir, photo_dir)
        return None
    return previous


def _embed(photo_dir: Path, todo: Sequence[PhotoFile], encoder: Encoder, batch_size: int,
           workers: int, progress: bool, on_progress: Callable[[int, int], None] | None
           ) -> tuple[np.ndarray, list[PhotoFile], list[SkippedPhoto]]:
    """Decode on a thread pool and embed in batches; collect failures instead of raising."""
    prep = encoder.image_prep
    embedded: list[PhotoFile] = []
    failures: list[SkippedPhoto] = []
    vectors: list[np.ndarray] = []

    def decode(photo: PhotoFile) -> Any:
        try:
            return open_photo(photo_dir / photo.path, prep)
        except UnreadablePhotoError as error:
            return error

    def chunks() -> Iterator[Sequence[PhotoFile]]:
        for start in range(0, len(todo), batch_size):
            yield todo[start:start + batch_size]

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(todo), desc="indexing", unit="photo", disable=not progress) as bar:
        decoded_batches = pool.map(lambda chunk: (chunk, [decode(p) for p in chunk]), chunks())
        for chunk, images in decoded_batches:
            good = [(p, im) for p, im in zip(chunk, images, strict=True)
                    if not isinstance(im, Exception)]
            for p, im in zip(chunk, images, strict=True):
                if isinstance(im, Exception):
                    failures.append(SkippedPhoto(p.path, p.size, p.mtime_ns, str(im)))
                    log.warning("skipped unreadable photo %s: %s", p.path, im)
            if good:
                vectors.append(encoder.encode_pixels(to_array([im for _, im in good])))
                embedded.extend(p for p, _ in good)
            done += len(chunk)
            bar.update(len(chunk))
            if on_progress is not None:
                on_progress(done, len(todo))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
    return matrix.astype(np.float32), embedded, failures


def write_generation(root: Path, manifest: dict[str, Any], embeddings: np.ndarray) -> Path:
    """Write a complete generation next to the live one, then switch `CURRENT` atomically."""
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in root.glob("gen-*") if p.is_dir() and
                      not p.name.endswith(".tmp"))
    number = int(existing[-1].split("-")[1]) + 1 if existing else 1
    name = f"gen-{number:06d}"
    staging = root / f"{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    with open(staging / "embeddings.npy", "wb") as handle:
        np.save(handle, np.ascontiguousarray(embeddings, dtype=np.float32))
        handle.flush()
        os.fsync(handle.fileno())
    _write_text_synced(staging / "manifest.json", json.dumps(manifest, ensure_ascii=False))
    os.replace(staging, root / name)
    _write_text_synced(root / f"{CURRENT}.tmp", name)
    os.replace(root / f"{CURRENT}.tmp", root / CURRENT)
    for old in root.glob("gen-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def _write_text_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
