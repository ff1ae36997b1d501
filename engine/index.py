"""The embedded photo index: one directory with the embeddings and metadata of a collection.

Layout::

    INDEX_DIR/CURRENT            name of the live generation (replaced atomically)
    INDEX_DIR/moderation.csv     admin overrides (`engine.moderation`), outside every generation
    INDEX_DIR/gen-000007/
        manifest.json            model, dim, photo folder, per-photo path/size/mtime, skipped
                                 files, and `child_filter`: which detector scored the photos
        embeddings.npy           float32 (N, dim), rows L2-normalised, memory-mapped on open
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.child_filter import ChildFilter
from engine.encoders.base import Encoder
from engine.fileops import exclusive_lock
from engine.images import UnreadablePhotoError, is_photo_path, open_photo, to_array

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CURRENT = "CURRENT"
CHILD_SCORES = "child_scores.npy"
CHILD_FLAGS = "child_flags.npy"


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
                 embeddings: np.ndarray, stored_scores: np.ndarray | None = None) -> None:
        self.root = root
        self.generation = generation
        self.manifest = manifest
        self.embeddings = embeddings
        self.paths: list[str] = [p["path"] for p in manifest["photos"]]
        self._row_of = {path: row for row, path in enumerate(self.paths)}
        self.stored_scores = stored_scores

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
        scores: np.ndarray | None = None
        if manifest.get("child_filter") and (generation / CHILD_SCORES).is_file():
            scores = np.load(generation / CHILD_SCORES, mmap_mode="r")
            if len(scores) != len(manifest["photos"]):
                log.warning("index %s: child scores do not match the photos; ignoring them",
                            generation)
                scores = None
        return cls(root, generation, manifest, embeddings, scores)

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

    def signatures(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every indexed file, by path (what an allow override checks)."""
        return {p["path"]: (int(p["size"]), int(p["mtime_ns"])) for p in self.manifest["photos"]}

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

    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        """The `k` best rows not excluded, and how many excluded rows were passed over.

        `Ranking.withheld` counts the excluded rows the unfiltered ranking puts at or above
        the last row returned (ties count as above); when fewer than `k` rows come back (the
        allowed rows ran out) every excluded row counts, since each would have filled one of
        the empty places. `RankedRow.withheld_above` is the same count for each row, so a
        caller paging through results can tell how many were withheld within one page.
        """
        if len(self.paths) == 0 or k <= 0:
            return Ranking([], 0)
        raw = np.asarray(self.embeddings @ np.asarray(query, dtype=np.float32))
        excluding = exclude is not None and bool(exclude.any())
        scores = np.where(exclude, -np.inf, raw) if exclude is not None and excluding else raw
        take = min(k, len(scores))
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        rows = [(int(row), float(scores[row])) for row in top if np.isfinite(scores[row])]
        if not excluding:
            return Ranking([RankedRow(row, score, 0) for row, score in rows], 0)
        excluded_scores = raw[exclude]
        if not rows:
            return Ranking([], int(np.count_nonzero(~np.isnan(excluded_scores))))
        # Excluded scores at or above the last returned one, ascending, to count per row.
        above = np.sort(excluded_scores[excluded_scores >= rows[-1][1]])
        ranked = [RankedRow(row, score,
                            int(len(above) - np.searchsorted(above, score, side="left")))
                  for row, score in rows]
        if len(rows) < k:
            withheld = int(np.count_nonzero(~np.isnan(excluded_scores)))
        else:
            withheld = len(above)
        return Ranking(ranked, withheld)


@dataclass(frozen=True)
class RankedRow:
    """One returned row: its score and the excluded rows ranked at or above it."""

    row: int
    score: float
    withheld_above: int


@dataclass(frozen=True)
class Ranking:
    rows: list[RankedRow]
    withheld: int


# ------------------------------------------------------------------------------- updating


def update_index(photo_dir: Path, root: Path, encoder: Encoder, *, model_spec: str | None = None,
                 batch_size: int = 32,
                 workers: int = 2, progress: bool = True,
                 on_progress: Callable[[int, int], None] | None = None,
                 child_filter: ChildFilter | None = None) -> UpdateReport:
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
        "photos": [{"path": p.path, "size": p.size, "mtime_ns": p.mtime_ns} for p in photos],
        "skipped": [s.__dict__ for s in sorted(report.skipped, key=lambda s: s.path)],
    }
    child = None
    if child_filter is not None:
        scores = child_filter.scores(matrix)
        flags = child_filter.flags(scores)
        manifest["child_filter"] = _child_manifest(child_filter, flags)
        child = (scores, flags)
    write_generation(root, manifest, matrix, child=child)
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
    before: np.ndarray | None = None
    if index.child_filter_info is not None and (index.generation / CHILD_FLAGS).is_file():
        before = np.asarray(np.load(index.generation / CHILD_FLAGS), dtype=bool)
        if len(before) != len(index):
            before = None
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


def write_generation(root: Path, manifest: dict[str, Any], embeddings: np.ndarray | Path,
                     child: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write a complete generation next to the live one, then switch `CURRENT` atomically.

    `embeddings` is a matrix to save, or the `embeddings.npy` of an existing generation to
    hard-link (re-flagging: the vectors do not change). `child` is (scores, flags) per row.
    Writers are serialised by a lock file, so two updates never build the same generation.
    """
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
            _save_synced(staging / "embeddings.npy", np.ascontiguousarray(embeddings,
                                                                           dtype=np.float32))
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
