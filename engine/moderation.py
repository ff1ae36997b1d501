"""Moderation overrides: an admin forces a photo to be shown or never shown.

The detector makes mistakes both ways: it hides an adult who looks young, and it may miss a
child. An admin fixes either with an override, kept in a plain CSV in the index directory,
outside every generation, so that re-indexing and re-flagging never lose it::

    INDEX_DIR/moderation.csv
    photo,decision,size,mtime_ns,updated,note
    beach/family.jpg,block,,,2026-11-29T10:00:00+00:00,reported by a user
    city/portrait.jpg,allow,48213,1732874400000000000,2026-11-29T10:05:00+00:00,adult model

Precedence, per photo: **block override > allow override > detector flag**. A block always
wins (a hand-edited file holding both decisions for one photo blocks it). An allow holds only
while the file is the one the admin saw: `size` and `mtime_ns` are recorded from the index and
a changed file (another picture under the same name) falls back to the detector. Empty
`size`/`mtime_ns` (a hand-written line) allow the path whatever its content. A block needs no
signature: a path blocked before it is indexed stays blocked.

`python -m engine moderate` edits the file under a lock and replaces it atomically; a running
engine re-reads it when it changes, so a block takes effect on the next search.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from engine.fileops import exclusive_lock

log = logging.getLogger(__name__)

MODERATION_FILE = "moderation.csv"
COLUMNS = ("photo", "decision", "size", "mtime_ns", "updated", "note")
Decision = Literal["allow", "block"]
DECISIONS: tuple[Decision, ...] = ("allow", "block")


class ModerationError(ValueError):
    """A moderation file or request that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Override:
    """One admin decision about one photo (path relative to the photo folder)."""

    photo: str
    decision: Decision
    size: int | None = None
    mtime_ns: int | None = None
    updated: str = ""
    note: str = ""

    def holds_for(self, signature: tuple[int, int] | None) -> bool:
        """Whether an allow still applies to the file as indexed now (blocks always do)."""
        if self.decision == "block" or self.size is None or self.mtime_ns is None:
            return True
        return signature == (self.size, self.mtime_ns)


@dataclass(frozen=True)
class Overrides:
    """The parsed file, in file order."""

    items: tuple[Override, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Short hash of the decisions (logged with each search); `none` for no overrides."""
        if not self.items:
            return "none"
        digest = hashlib.sha256()
        for item in sorted(self.items, key=lambda o: (o.photo, o.decision)):
            digest.update(f"{item.photo}\t{item.decision}\t{item.size}\t{item.mtime_ns}\n"
                          .encode())
        return digest.hexdigest()[:8]

    def decisions(self) -> dict[str, list[Override]]:
        by_photo: dict[str, list[Override]] = {}
        for item in self.items:
            by_photo.setdefault(item.photo, []).append(item)
        return by_photo


# --------------------------------------------------------------------------- pure logic


def normalize_photo(photo: str) -> str:
    """The index's spelling of a relative path: forward slashes, no `./`, no leading `/`."""
    parts = [p for p in photo.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ModerationError(f"not a photo path relative to the photo folder: {photo!r}")
    return "/".join(parts)


def parse_overrides(text: str, source: str = MODERATION_FILE) -> Overrides:
    """Parse the CSV; `ModerationError` names the line of the first bad row."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return Overrides()
    missing = {"photo", "decision"} - set(reader.fieldnames)
    if missing:
        raise ModerationError(f"{source}: header must name columns {', '.join(COLUMNS)} "
                              f"(missing {', '.join(sorted(missing))})")
    items: list[Override] = []
    for row in reader:
        line = reader.line_num
        decision = (row.get("decision") or "").strip().lower()
        if decision not in DECISIONS:
            raise ModerationError(f"{source} line {line}: decision must be allow or block, "
                                  f"not {row.get('decision')!r}")
        try:
            photo = normalize_photo(row.get("photo") or "")
            size = _optional_int(row.get("size"))
            mtime = _optional_int(row.get("mtime_ns"))
        except (ModerationError, ValueError) as error:
            raise ModerationError(f"{source} line {line}: {error}") from None
        items.append(Override(photo=photo, decision=decision,  # type: ignore[arg-type]
                              size=size, mtime_ns=mtime,
                              updated=(row.get("updated") or "").strip(),
                              note=(row.get("note") or "").strip()))
    return Overrides(tuple(items))


def _optional_int(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value else None


def format_overrides(overrides: Overrides) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in overrides.items:
        writer.writerow([item.photo, item.decision, "" if item.size is None else item.size,
                         "" if item.mtime_ns is None else item.mtime_ns, item.updated,
                         item.note])
    return out.getvalue()


def with_decision(overrides: Overrides, override: Override | None, photo: str) -> Overrides:
    """`overrides` with every line for `photo` replaced by `override` (None: cleared)."""
    kept = [item for item in overrides.items if item.photo != photo]
    if override is not None:
        kept.append(replace(override, photo=photo))
    return Overrides(tuple(sorted(kept, key=lambda o: o.photo)))


def decided(decisions: Sequence[Override], signature: tuple[int, int] | None
            ) -> Decision | None:
    """What an admin decided for one photo (its override lines), for the file as indexed now:
    a block always wins, an allow only while it holds for `signature`, else None (the
    detector decides)."""
    if any(d.decision == "block" for d in decisions):
        return "block"
    if any(d.holds_for(signature) for d in decisions):
        return "allow"
    return None


@dataclass(frozen=True)
class Exclusion:
    """Which rows search must never return, and why (counts for logs and reports)."""

    mask: np.ndarray
    flagged: int
    blocked: int
    allowed: int

    @property
    def excluded(self) -> int:
        return int(self.mask.sum())


def apply_overrides(flags: np.ndarray, paths: Sequence[str],
                    signatures: Mapping[str, tuple[int, int]], overrides: Overrides
                    ) -> Exclusion:
    """Block override > allow override > detector flag, row by row.

    `flags` are the detector's flags in row order of `paths`; `signatures` the indexed files'
    (size, mtime_ns), against which an allow is checked. `blocked` counts rows hidden by a
    block override, `allowed` flagged rows shown because of an allow.
    """
    mask = np.array(flags, dtype=bool, copy=True)
    blocked = allowed = 0
    if overrides.items:
        row_of = {path: row for row, path in enumerate(paths)}
        for photo, decisions in overrides.decisions().items():
            row = row_of.get(photo)
            if row is None:
                continue
            decision = decided(decisions, signatures.get(photo))
            if decision == "block":
                mask[row] = True
                blocked += 1
            elif decision == "allow":
                if mask[row]:
                    allowed += 1
                mask[row] = False
    return Exclusion(mask=mask, flagged=int(np.count_nonzero(flags)), blocked=blocked,
                     allowed=allowed)


@dataclass(frozen=True)
class ReviewItem:
    """A photo the detector hides that no moderator has decided on yet."""

    photo: str
    score: float


@dataclass(frozen=True)
class ReviewQueue:
    """What awaits review: pending photos, least certain first, and what was decided already."""

    pending: list[ReviewItem]
    flagged: int
    allowed: int
    blocked: int


def review_queue(scores: np.ndarray, flags: np.ndarray, paths: Sequence[str],
                 signatures: Mapping[str, tuple[int, int]], overrides: Overrides
                 ) -> ReviewQueue:
    """Photos hidden by the detector flag alone, lowest score first.

    Why: the detector fails closed. On Flickr-like collections it hides 85-88% of photos to
    miss no child, and on photos unlike Flickr (products, landscapes, graphics) nearly all of
    them, with scores that carry little meaning there. An admin clears such a collection
    fastest by looking at the photos the detector was least sure of first. A flagged photo is
    decided when a block names it, or an allow that still holds for the indexed file; an allow
    for a changed file does not hold (`Override.holds_for`), so that photo is due again.
    `allowed` and `blocked` count the flagged photos moderators already decided.
    """
    decisions = overrides.decisions()
    pending: list[ReviewItem] = []
    allowed = blocked = 0
    flagged_rows = np.flatnonzero(np.asarray(flags, dtype=bool))
    for row in flagged_rows.tolist():
        photo = paths[row]
        decision = decided(decisions.get(photo, []), signatures.get(photo))
        if decision == "block":
            blocked += 1
        elif decision == "allow":
            allowed += 1
        else:
            pending.append(ReviewItem(photo, float(scores[row])))
    pending.sort(key=lambda item: (item.score, item.photo))
    return ReviewQueue(pending=pending, flagged=len(flagged_rows), allowed=allowed,
                       blocked=blocked)


# ---------------------------------------------------------------------------------- I/O


def moderation_path(index_root: Path) -> Path:
    return index_root / MODERATION_FILE


def read_overrides(index_root: Path) -> Overrides:
    """The overrides of an index directory (none when the file does not exist)."""
    path = moderation_path(index_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Overrides()
    except (OSError, UnicodeDecodeError) as error:
        raise ModerationError(f"cannot read {path}: {error}") from error
    return parse_overrides(text, str(path))


def _locked(index_root: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise read-modify-write of the file between processes (two admins at once)."""
    return exclusive_lock(index_root / ".moderation.lock")


def set_decision(index_root: Path, photo: str, decision: Decision | None, *,
                 signature: tuple[int, int] | None = None, note: str = "",
                 now: datetime | None = None) -> Overrides:
    """Record (or with None clear) the decision for `photo`; returns the new overrides.

    An allow records `signature` (the indexed file's size and mtime) so that it lapses when
    the file changes; a block records none.
    """
    photo = normalize_photo(photo)
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    with _locked(index_root):
        current = read_overrides(index_root)
        override = None
        if decision is not None:
            if decision not in DECISIONS:
                raise ModerationError(f"decision must be allow or block, not {decision!r}")
            size, mtime = signature if (decision == "allow" and signature) else (None, None)
            override = Override(photo, decision, size, mtime, stamp, note.replace("\n", " "))
        updated = with_decision(current, override, photo)
        path = moderation_path(index_root)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(format_overrides(updated))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    log.info("moderation: %s %s", decision or "cleared", photo)
    return updated


class OverridesWatcher:
    """Re-reads the moderation file when it changes (checked with one `stat` per search).

    A file that fails to parse after a change keeps the last good overrides in force and logs
    an error: a typo in a hand edit must not lift the existing blocks.
    """

    def __init__(self, index_root: Path) -> None:
        self.path = moderation_path(index_root)
        self._stamp = self._stat()
        self.overrides = read_overrides(index_root)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> bool:
        """Re-read when the file changed; True when the overrides in force changed."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            fresh = read_overrides(self.path.parent)
        except ModerationError as error:
            log.error("moderation file changed but cannot be used, keeping the previous "
                      "overrides: %s", error)
            return False
        changed = fresh != self.overrides
        self.overrides = fresh
        return changed
