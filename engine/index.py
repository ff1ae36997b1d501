"""The embedded photo index: one directory with the embeddings and metadata of a collection.

Layout::

    INDEX_DIR/CURRENT            name of the live generation (replaced atomically)
    INDEX_DIR/moderation.csv     admin overrides (`engine.moderation`), outside every generation
    INDEX_DIR/gen-000007/
        manifest.json            model, dim, photo folder, photo count, skipped files, and
                                 `child_filter`: which detector scored the photos
        paths.txt                the photos' paths relative to the folder, one per line, in row
                                 order (a 1M-photo index opens in well under a second: no
                                 per-photo JSON to parse)
        signatures.npy           int64 (N, 2): size and mtime_ns of each photo's file
        keys.npy                 int64 (N,): stable photo keys (`engine.backends.base`)
        embeddings.npy           float32 or float16 (N, dim), rows L2-normalised, memory-mapped
        child_scores.npy         float32 (N,), the child detector's score of each photo
        child_flags.npy          bool (N,), score >= the threshold in `child_filter`

An update writes a complete new generation beside the live one and only then swaps `CURRENT`,
so a crash or Ctrl-C mid-run leaves the previous index usable. Photos are identified by their
path relative to the photo folder; size and modification time tell whether a file changed.

Child scores are computed from the embeddings when a generation is written (indexing scores
every photo it embeds) and again by `reflag_index` when the detector or threshold changes;
re-flagging writes a new generation whose `embeddings.npy` is a hard link to the old one, so
no photo is decoded or embedded again. An index without scores (older, or written without a
filter) still searches safely: the engine scores it in memory (`PhotoIndex.child_scores`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.base import RankedRow, Ranking, photo_keys
from engine.backends.exact import ExactBackend
from engine.child_filter import ChildFilter
from engine.embedding_pipeline import checkpoint_dir, embed_photos, remove_checkpoint
from engine.encoders.base import Encoder
from engine.fileops import exclusive_lock
from engine.images import is_photo_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 1: photos listed inside manifest.json (still readable)
PATHS = "paths.txt"
SIGNATURES = "signatures.npy"
CURRENT = "CURRENT"
CHILD_SCORES = "child_scores.npy"
CHILD_FLAGS = "child_flags.npy"
KEYS = "keys.npy"

__all__ = ["PhotoIndex", "RankedRow", "Ranking", "reflag_index", "update_index"]


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
            if not is_photo_path(full) or "\n" in name or "\r" in name:
                continue  # line breaks cannot be stored in paths.txt (and no camera makes them)
            try:
                stat = full.stat()
            except OSError:
                continue
            relative = full.relative_to(photo_dir).as_posix()
            found[relative] = PhotoFile(relative, stat.st_size, stat.st_mtime_ns)
    return found


@dataclass(frozen=True)
class PhotoColumns:
    """The photos of a generation in row order: paths and (size, mtime_ns) signatures."""

    paths: list[str]
    signatures: np.ndarray  # int64 (N, 2)

    @classmethod
    def from_records(cls, records: Sequence[dict[str, Any]]) -> PhotoColumns:
        """From `[{"path", "size", "mtime_ns"}, ...]` (format 1 manifests, callers' lists)."""
        signatures = np.array([(int(r["size"]), int(r["mtime_ns"])) for r in records],
                              dtype=np.int64).reshape(len(records), 2)
        return cls([str(r["path"]) for r in records], signatures)


class PhotoIndex:
    """A read-only view of the live generation of an index directory."""

    def __init__(self, root: Path, generation: Path, manifest: dict[str, Any],
                 embeddings: np.ndarray, stored_scores: np.ndarray | None = None,
                 photos: PhotoColumns | None = None) -> None:
        self.root = root
        self.generation = generation
        self.manifest = manifest
        self.embeddings = embeddings
        if photos is None:
            photos = PhotoColumns.from_records(manifest.get("photos", []))
        self.paths: list[str] = photos.paths
        self.signature_array = photos.signatures
        self._row_of: dict[str, int] | None = None
        self.stored_scores = stored_scores
        self._keys: np.ndarray | None = None

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
        if manifest.get("format") == 1:
            photos = PhotoColumns.from_records(manifest.pop("photos"))
        elif manifest.get("format") == FORMAT_VERSION:
            photos = _read_columns(generation)
        else:
            raise IndexNotFoundError(f"index at {root} has unknown format "
                                     f"{manifest.get('format')!r}; rebuild it")
        if photos.paths:
            embeddings = np.load(generation / "embeddings.npy", mmap_mode="r")
            if len(embeddings) != len(photos.paths):
                raise IndexNotFoundError(f"index at {root} is damaged ({len(embeddings)} "
                                         f"vectors for {len(photos.paths)} photos); rebuild it")
        else:
            embeddings = np.zeros((0, int(manifest["dim"])), dtype=np.float32)
        scores: np.ndarray | None = None
        if manifest.get("child_filter") and (generation / CHILD_SCORES).is_file():
            scores = np.load(generation / CHILD_SCORES, mmap_mode="r")
            if len(scores) != len(photos.paths):
                log.warning("index %s: child scores do not match the photos; ignoring them",
                            generation)
                scores = None
        return cls(root, generation, manifest, embeddings, scores, photos)

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
        if self._row_of is None:  # built on first use: opening a 1M index stays cheap
            self._row_of = {p: row for row, p in enumerate(self.paths)}
        return self._row_of.get(path)

    def signatures(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every indexed file, by path (what an allow override checks)."""
        return dict(zip(self.paths, map(tuple, self.signature_array.tolist()), strict=True))

    def stored_flags(self) -> np.ndarray | None:
        """The child flag of every row as the generation stores it, or None when it stores
        none or an unreadable/mismatched file."""
        path = self.generation / CHILD_FLAGS
        if not path.is_file():
            return None
        try:
            flags = np.asarray(np.load(path), dtype=bool)
        except (OSError, ValueError, EOFError) as error:
            log.warning("index %s: child flags unreadable (%s); ignoring them", path, error)
            return None
        if flags.shape != (len(self.paths),):
            log.warning("index %s: child flags do not match the photos; ignoring them", path)
            return None
        return flags

    @property
    def columns(self) -> PhotoColumns:
        return PhotoColumns(self.paths, self.signature_array)

    @property
    def child_filter_info(self) -> dict[str, Any] | None:
        """What scored the stored photos: detector identity, threshold, flagged count."""
        info = self.manifest.get("child_filter")
        return dict(info) if isinstance(info, dict) else None

    def child_scores(self, child_filter: ChildFilter) -> np.ndarray:
        """Every photo's score under `child_filter`: the stored scores when the same detector
        wrote them, else computed now from the embeddings (never from the photos)."""
        info = self.child_filter_info
        if not child_filter.enabled:
            return np.zeros(len(self.paths), dtype=np.float32)
        if (self.stored_scores is not None and info is not None
                and info.get("detector") == child_filter.detector_id):
            return np.asarray(self.stored_scores, dtype=np.float32)
        if len(self.paths):
            log.warning("index %s was scored by %s, not %s: scoring %d photos in memory "
                        "(store the scores with `python -m engine reflag --index %s`)",
                        self.root, info.get("detector") if info else "nothing",
                        child_filter.detector_id, len(self.paths), self.root)
        return child_filter.scores(self.embeddings)

    def require_model(self, model_name: str) -> None:
        """Refuse to search with a model other than the one that built the index."""
        if model_name != self.model:
            raise IndexModelMismatchError(
                f"index at {self.root} was built with model {self.model!r} but the search uses "
                f"{model_name!r}; re-index: python -m engine index {self.photo_dir} "
                f"--index {self.root} --model <spec>")

    @property
    def keys(self) -> np.ndarray:
        """Stable `photo_key` of every row (int64), what persistent backends are keyed by."""
        if self._keys is None:
            stored = self.generation / KEYS
            if stored.is_file():
                self._keys = np.load(stored)
            else:
                self._keys = photo_keys(self.paths)
        return self._keys

    # -- search --------------------------------------------------------------------------
    def top_k(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None
              ) -> list[tuple[int, float]]:
        """The `k` best rows for one query vector as (row, score), best first, by exact scan.

        `exclude` is a boolean mask over rows (True = never return); the matrix is not copied.
        """
        return [(r.row, r.score) for r in self.ranked(query, k, exclude).rows]

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        """The `k` best rows not excluded, by exact scan, and how many excluded rows were
        passed over (see `engine.backends.exact.rank_scores`)."""
        return ExactBackend(self).ranked(query, k, exclude)


# ------------------------------------------------------------------------------- updating


def update_index(photo_dir: Path, root: Path, encoder: Encoder, *, model_spec: str | None = None,
                 batch_size: int = 32,
                 workers: int = 2, progress: bool = True,
                 on_progress: Callable[[int, int], None] | None = None,
                 child_filter: ChildFilter | None = None,
                 dtype: str | None = None, checkpoint_seconds: float = 10.0,
                 batch_delay: float = 0.0) -> UpdateReport:
    """Bring the index at `root` in line with `photo_dir`: embed new/changed, drop deleted.

    A run with another model (or another photo folder) than the live index re-embeds
    everything. Unreadable photos are skipped and reported; they are not retried until the
    file changes. With `child_filter` every photo of the new generation gets its child score
    and flag (scoring is a product with the embeddings, so all rows are scored, not only the
    new ones); a run that changes no photo but brings another filter re-flags the index.
    """
    photo_dir = photo_dir.resolve()
    found = scan_photos(photo_dir)
    previous = _open_previous(root, encoder, photo_dir)
    old_rows: dict[str, tuple[int, tuple[int, int]]] = {}
    old_skipped: dict[str, SkippedPhoto] = {}
    if previous is not None:
        for row, (path, (size, mtime)) in enumerate(
                zip(previous.paths, previous.signature_array.tolist(), strict=True)):
            old_rows[path] = (row, (int(size), int(mtime)))
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
    new_vectors, embedded, failures, resumed = _embed(photo_dir, todo, encoder, batch_size,
                                                      workers, progress, on_progress, root,
                                                      checkpoint_seconds, batch_delay)
    report.embed_seconds = time.perf_counter() - started
    report.embedded = len(embedded) - resumed  # photos/s counts only what this run embedded
    report.added -= sum(1 for f in failures if f.path not in old_rows)
    report.updated -= sum(1 for f in failures if f.path in old_rows)
    report.skipped.extend(failures)
    report.total = len(keep) + len(embedded)

    same_filter = child_filter is None or _scored_by(previous, child_filter)
    if previous is not None and not report.changed and not failures and same_filter and \
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
        "photos": PhotoColumns([p.path for p in photos],
                               np.array([p.signature() for p in photos],
                                        dtype=np.int64).reshape(len(photos), 2)),
        "skipped": [s.__dict__ for s in sorted(report.skipped, key=lambda s: s.path)],
    }
    child = None
    if child_filter is not None:
        scores = child_filter.scores(matrix)
        flags = child_filter.flags(scores)
        manifest["child_filter"] = _child_manifest(child_filter, flags)
        child = (scores, flags)
    if dtype is None:  # keep the live index's storage type
        dtype = str(previous.manifest.get("dtype", "float32")) if previous else "float32"
    write_generation(root, manifest, matrix, child=child, dtype=dtype)
    remove_checkpoint(root, encoder, photo_dir)  # the generation holds every vector now
    return report


def _scored_by(index: PhotoIndex | None, child_filter: ChildFilter) -> bool:
    """Whether `index` holds scores and flags written by exactly this filter."""
    info = index.child_filter_info if index is not None else None
    return (index is not None and info is not None and index.stored_scores is not None
            and info.get("version") == child_filter.version)


def _child_manifest(child_filter: ChildFilter, flags: np.ndarray) -> dict[str, Any]:
    return {"detector": child_filter.detector_id, "threshold": child_filter.threshold,
            "version": child_filter.version, "flagged": int(np.count_nonzero(flags)),
            "scored": datetime.now(UTC).isoformat(timespec="seconds")}


@dataclass(frozen=True)
class ReflagReport:
    """What re-flagging did: flags before and after, and how many photos changed side."""

    total: int
    flagged_before: int | None
    flagged: int
    newly_flagged: int
    unflagged: int
    detector: str
    threshold: float
    written: bool


def reflag_index(root: Path, child_filter: ChildFilter) -> ReflagReport:
    """Score and flag every photo of the live index again from its stored embeddings.

    Used when the detector or its threshold changes. Nothing is decoded or embedded: the new
    generation hard-links the old `embeddings.npy` (copies it where links are impossible).
    Moderation overrides live outside generations and are untouched.
    """
    index = PhotoIndex.open(root)
    before = index.stored_flags() if index.child_filter_info is not None else None
    scores = child_filter.scores(index.embeddings)
    flags = child_filter.flags(scores)
    old = before if before is not None else np.zeros(len(flags), dtype=bool)
    report = ReflagReport(
        total=len(index), flagged_before=None if before is None else int(before.sum()),
        flagged=int(flags.sum()), newly_flagged=int(np.count_nonzero(flags & ~old)),
        unflagged=int(np.count_nonzero(~flags & old)), detector=child_filter.detector_id,
        threshold=child_filter.threshold, written=not _scored_by(index, child_filter))
    if not report.written:
        return report  # already flagged by exactly this filter
    manifest = dict(index.manifest)
    manifest["child_filter"] = _child_manifest(child_filter, flags)
    manifest["photos"] = index.columns
    source: np.ndarray | Path = (index.generation / "embeddings.npy" if len(index)
                                 else index.embeddings)
    write_generation(root, manifest, source, child=(scores, flags))
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
           workers: int, progress: bool, on_progress: Callable[[int, int], None] | None,
           root: Path, checkpoint_seconds: float = 10.0, batch_delay: float = 0.0
           ) -> tuple[np.ndarray, list[PhotoFile], list[SkippedPhoto], int]:
    """Decode in worker processes and embed in batches (`engine.embedding_pipeline`),
    checkpointing finished photos under `root` so a crashed run resumes where it stopped.

    Returns the vectors of the embedded photos (resumed ones included), those photos, the
    unreadable ones, and how many came from an interrupted run's checkpoint.
    """
    run = embed_photos(photo_dir, todo, encoder, batch_size=batch_size, workers=workers,
                       progress=progress, on_progress=on_progress,
                       checkpoint=checkpoint_dir(root, encoder.name, photo_dir,
                                                 encoder.image_prep),
                       checkpoint_seconds=checkpoint_seconds, batch_delay=batch_delay)
    failures = [SkippedPhoto(p.path, p.size, p.mtime_ns, error) for p, error in run.failures]
    return run.vectors, run.embedded, failures, run.resumed


def write_generation(root: Path, manifest: dict[str, Any], embeddings: np.ndarray | Path,
                     child: tuple[np.ndarray, np.ndarray] | None = None,
                     dtype: str = "float32") -> Path:
    """Write a complete generation next to the live one, then switch `CURRENT` atomically.

    `embeddings` is a matrix to save, or the `embeddings.npy` of an existing generation to
    hard-link (re-flagging: the vectors do not change). `child` is (scores, flags) per row.
    `manifest["photos"]` is a `PhotoColumns` or a list of {"path", "size", "mtime_ns"}; it is
    stored as `paths.txt` + `signatures.npy`, not inside the JSON. `dtype` is the storage
    type of new embeddings: float32, or float16 for half the memory (scores differ by ~1e-3).
    Writers are serialised by a lock file, so two updates never build the same generation.
    """
    manifest = dict(manifest)
    photos = manifest.pop("photos")
    if not isinstance(photos, PhotoColumns):
        photos = PhotoColumns.from_records(photos)
    manifest["format"] = FORMAT_VERSION
    if dtype not in ("float32", "float16"):
        raise ValueError(f"embeddings are stored as float32 or float16, not {dtype!r}")
    if not isinstance(embeddings, Path):
        manifest["dtype"] = dtype
    manifest["count"] = len(photos.paths)
    bad = [p for p in photos.paths if "\n" in p or "\r" in p]
    if bad:
        raise ValueError(f"photo paths with line breaks cannot be indexed: {bad[:3]!r}")
    root.mkdir(parents=True, exist_ok=True)
    with _write_lock(root):
        existing = sorted(p.name for p in root.glob("gen-*") if p.is_dir() and
                          not p.name.endswith(".tmp"))
        number = int(existing[-1].split("-")[1]) + 1 if existing else 1
        name = f"gen-{number:06d}"
        staging = root / f"{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        if isinstance(embeddings, Path):
            try:
                os.link(embeddings, staging / "embeddings.npy")
            except OSError:
                shutil.copyfile(embeddings, staging / "embeddings.npy")
        else:
            _save_synced(staging / "embeddings.npy",
                         np.ascontiguousarray(embeddings, dtype=np.dtype(dtype)))
        _write_text_synced(staging / PATHS, "".join(p + "\n" for p in photos.paths))
        _save_synced(staging / SIGNATURES, np.asarray(photos.signatures, dtype=np.int64))
        _save_synced(staging / KEYS, photo_keys(photos.paths))
        if child is not None:
            _save_synced(staging / CHILD_SCORES, np.asarray(child[0], dtype=np.float32))
            _save_synced(staging / CHILD_FLAGS, np.asarray(child[1], dtype=bool))
        _write_text_synced(staging / "manifest.json", json.dumps(manifest, ensure_ascii=False))
        os.replace(staging, root / name)
        _write_text_synced(root / f"{CURRENT}.tmp", name)
        os.replace(root / f"{CURRENT}.tmp", root / CURRENT)
        for old in root.glob("gen-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    return root / name


def _read_columns(generation: Path) -> PhotoColumns:
    text = (generation / PATHS).read_text(encoding="utf-8")
    paths = text.split("\n")[:-1] if text else []
    signatures = np.load(generation / SIGNATURES)
    if len(signatures) != len(paths):
        raise IndexNotFoundError(f"index generation {generation} is damaged (paths and "
                                 "signatures differ in length); rebuild it")
    return PhotoColumns(paths, signatures)


def _write_lock(root: Path) -> contextlib.AbstractContextManager[None]:
    """One writer per index directory at a time (two `index` runs, `reflag`, the bot)."""
    return exclusive_lock(root / ".write.lock")


def _save_synced(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())


def _write_text_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
