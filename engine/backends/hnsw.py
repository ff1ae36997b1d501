"""The hnsw backend: HNSW graphs (usearch) persisted next to the embeddings, synced per key.

Why usearch, not FAISS. Measured on this machine (2 shared cores, nice'd) over 100 000
× 256-d vectors (the packaged model's 6 000 real Flickr8k photo embeddings, then noisy copies
of them, σ = 0.05 per dimension, renormalised), 200 real caption queries, k = 10:

=========================  =======  =====  =====  ====================================
library, storage, M        build    file   RSS+   query p50 / recall@10 at efSearch
=========================  =======  =====  =====  ====================================
FAISS HNSWFlat f32, M=32   17.7 s   124MB  126MB  ef 64: 0.21 ms / .993; 128: 0.33 / .998
FAISS HNSWFlat f32, M=16   10.3 s   111MB  111MB  ef 64: 0.16 ms / .984; 128: 0.29 / .996
FAISS HNSWSQ f16, M=32      9.3 s    75MB   50MB  ef 64: 0.19 ms / .993; 128: 0.31 / .998
usearch f16, M=32           9.5 s    75MB   87MB  ef 64: 0.22 ms / .995; 128: 0.34 / .998
usearch f16, M=16           7.6 s    63MB   68MB  ef 64: 0.19 ms / .988; 128: 0.28 / .997
usearch f32, M=32          21.6 s   124MB  129MB  ef 64: 0.53 ms / .996; 128: 0.82 / 1.00
=========================  =======  =====  =====  ====================================

Speed and recall are a tie at equal storage (f16). With 85% of rows excluded, FAISS's filtered
search (`SearchParametersHNSW(sel=IDSelectorBitmap)`, ef 128: 0.35 ms, recall .985) was no
better than asking for unfiltered candidates and dropping the excluded ones (0.36 ms, .985),
so the filtering capability did not decide. What decided is maintenance: usearch keys vectors
by our own 63-bit photo keys and removes them (`remove`: a few µs per key, removed slots are
reused by later adds; recall after removing 10%: .994), while FAISS's HNSW cannot remove at
all — we would keep an id map, mask tombstones on every query and rebuild far more often.
usearch also stores f16 or i8 natively (half or a quarter of float32) and can memory-map
a saved graph (`restore(view=True)`), so a process whose graph is current opens it in
milliseconds and shares the page cache with every other process.

At 1 000 000 vectors (usearch f16; the noise now shaped by the real embeddings' covariance,
same energy: isotropic noise inflates the intrinsic dimension ~6×, and HNSW with it — M=16,
efC=100, ef 128 gave recall .60 —, which no real collection does; see the scale bench):

=====================  ========  =====  =============================================
build parameters       build     file   query p50 / recall@10 at efSearch
=====================  ========  =====  =============================================
M=16, efC=128          541 s     630MB  ef 256: 2.96 ms / .922; 384: 3.49 / .949;
                                        512: 4.39 / .964
M=32, efC=128          818 s     752MB  ef 128: 1.95 ms / .920; 192: 2.39 / .949;
                                        256: 3.62 / .962; 320: 3.94 / .971
=====================  ========  =====  =============================================

(2 cores shared with other jobs, so builds ran slower than on an idle machine; latencies of
this memory-bound work vary up to 2× from one minute to the next on this shared host:
compare figures taken side by side only.) Caption queries are far from every photo (cosine
~0.57 to the best one: the text/image modality gap), which is why 1M needs a much wider beam
than 100k. M=32, efC=128 is the default; `default_ef_search` scales ef with the collection
(64 up to 100k, 256 at 1M), and both graphs below walk with it.

Two graphs, split by the child flag stored in the generation (`child_flags.npy`): the
`unflagged` photos and the `flagged` ones. The engine excludes flagged photos from every
search (85% of a collection can be flagged; the packaged detector hides ~88% of Flickr8k),
and an HNSW walk over a graph where most nodes are excluded needs a beam several times wider
to keep recall: at 1M with 85% flagged, one graph (f16) gave recall@10 .90 at ef 256 (5.2
ms) and .955 at ef 512 (9 ms). Split (i8, ef 256, the scale bench on a quiet machine): .998
at p50 3.1 ms, most of it the flagged graph counting the flagged photos ranked above the
last result (the withheld count; at 1M it misses ~7% of them, 3.8 of 56 on average); without
a mask both graphs are searched and merged: .975 at 2.7 ms. An index without flags has one
graph (the flagged one is empty). Re-flagging moves keys from one graph to the other
incrementally.

Vectors in the graphs are i8, not f16: the graph only picks candidates, whose scores are
then recomputed exactly, and a quarter of float32 means fewer cache misses per hop. Side by
side at 1M (split graphs, ef 80/224, same machine, same minute): build 246 s vs 553 s,
graphs 532 MB vs 788 MB, query p50 3.2-3.9 ms vs 6.0-6.5 ms, recall@10 .971 vs .975 (no
mask) and .992 vs .991 (85% flagged); at 100k: build 11 s vs 16 s, p50 0.63 ms vs 0.87 ms,
recall .993 vs .992.

Layout (`INDEX_DIR/hnsw/`, outside the generation directories, which every update replaces)::

    state.json                        library, build parameters, model, dim, the generation
                                      synced with, per graph the two files below, its size
                                      and removals since its build (the commit point)
    graph-000007-unflagged.usearch    a graph, i8 vectors, keyed by `photo_key(path)`
    members-000007-unflagged.npy      int64 (n, 3): key, size, mtime_ns of every photo in the
                                      graph, sorted by key: what tells a changed photo
    graph-000005-flagged.usearch      (a graph untouched by a sync keeps its older number)
    members-000005-flagged.npy

A sync writes the numbered files under temporary names, renames them, then replaces
`state.json`; only then are files it no longer names deleted. A crash at any point leaves the
previous state naming the previous, complete files. Syncs (and opens, which may sync) are
serialised by `flock` on `INDEX_DIR/.hnsw.lock`.

`HnswBackend.open` syncs: unchanged generation → memory-map the graphs (no write); otherwise,
per graph, remove the keys it should no longer hold, re-add the keys whose file signature
changed (vectors from the stored embeddings: nothing is re-embedded), add new keys; build a
graph from scratch when nothing usable is persisted, when model, dim or build parameters
differ, or when removals since its last build exceed `rebuild_share` of it (usearch only
marks removed nodes; links through them go on costing hops until a rebuild). `sync(index)` is
the same, for `python -m engine index` to call right after an update so the first query does
not wait.

Queries: the graphs return candidates; their scores are recomputed from the stored embeddings
(so scores and order are the exact backend's, not i8 approximations) and
`ranking_from_candidates` drops the excluded ones and counts the withheld. With an exclusion
mask close to the stored flags (the child filter plus a few moderation overrides) the
unflagged graph gives the results (its moderation-blocked photos dropped, the flagged photos
that moderation allows scored exactly and merged in) and the flagged graph the excluded
photos ranked above the k-th result. With no mask, or one unrelated to the flags, both graphs
give `base.over_fetch` candidates each, merged. Too few allowed candidates → twice as many,
down to an exact scan once the count reaches `FALLBACK_SHARE` of the collection (or
`MAX_CANDIDATES`). Withheld counts are the exact scan's except where a graph missed an
excluded photo ranked above the last one returned: they can be lower, never higher.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.backends.base import (
    BackendError,
    KeyMap,
    Ranking,
    over_fetch,
    ranking_from_candidates,
    stored_flags,
)
from engine.backends.exact import rank_scores, scores_of
from engine.fileops import exclusive_lock

if TYPE_CHECKING:
    from engine.index import PhotoIndex

log = logging.getLogger(__name__)

STATE_FORMAT = 1
STATE = "state.json"
LIBRARY = "usearch"
UNFLAGGED, FLAGGED = "unflagged", "flagged"
PARTS = (UNFLAGGED, FLAGGED)
# Build parameters, chosen at 1M (module docstring): M=32 reaches recall@10 .96 at ef 256 in
# 3.6 ms; M=16 needs ef 512 (4.4 ms) for the same recall, for a 1.5× faster build; i8 vectors
# search ~40% faster than f16 at the same recall.
CONNECTIVITY = 32
EXPANSION_ADD = 128
VECTOR_DTYPE = "i8"
REBUILD_SHARE = 0.25  # removals since a graph's build, as a share of it → rebuild it
FALLBACK_SHARE = 0.10  # candidates needed ≥ this share of the collection → exact scan
MAX_CANDIDATES = 8192  # … or more than this many (an exact scan is cheaper than such a walk)
# Flagged photos a mask may allow (moderation overrides, each scored exactly per query) and
# still be searched through the unflagged graph: at most this many, and this share of them.
MAX_ALLOWED_FLAGGED = 4096
ALLOWED_FLAGGED_SHARE = 0.05
PARALLEL_MIN = 20_000  # fewer vectors to add than this: one thread (deterministic graph)
ADD_BLOCK = 65536  # vectors converted and added per call: bounds the float32 copy to 64 MiB
OWN_FILE = re.compile(r"(?:graph-(\d+)-\w+\.usearch|members-(\d+)-\w+\.npy|state\.json)"
                      r"(?:\.tmp)?")


@dataclass(frozen=True)
class BuildParams:
    """What a graph was built with; a graph built otherwise is rebuilt, not patched."""

    connectivity: int = CONNECTIVITY
    expansion_add: int = EXPANSION_ADD
    dtype: str = VECTOR_DTYPE


@dataclass
class SyncReport:
    """What opening did to the persisted graphs (tests and logs read it).

    `action`: "unchanged" (mapped as saved), "incremental" (patched, or only the generation
    recorded), "built" (a graph built from scratch), "memory" (built or patched but not
    saved: the directory could not be written). `added`/`removed` count vectors over both
    graphs (a photo moving between them counts in both).
    """

    action: str = "unchanged"
    reason: str = ""
    added: int = 0
    removed: int = 0
    count: int = 0
    seconds: float = 0.0
    built: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Part:
    """One graph as `state.json` records it."""

    graph: str
    members: str
    count: int
    removed_since_build: int
    built: str


@dataclass(frozen=True)
class _State:
    """The parsed `state.json`."""

    library: str
    params: BuildParams
    model: str
    dim: int
    generation: dict[str, Any]
    parts: dict[str, _Part]
    version: int

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = STATE_FORMAT
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> _State:
        data = json.loads(text)
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {data.get('format')!r}")
        data.pop("format")
        data["params"] = BuildParams(**data["params"])
        data["parts"] = {name: _Part(**part) for name, part in data["parts"].items()}
        state = cls(**data)
        if set(state.parts) != set(PARTS) or not isinstance(state.generation, dict):
            raise ValueError("graphs or generation missing")
        return state


@dataclass
class _Outcome:
    """One graph after a sync: `record` when it is the saved one unchanged, else what to
    record for it (`built`: its build date when patched; `why`: why it was built now)."""

    graph: Any
    record: _Part | None = None
    removed_since_build: int = 0
    built: str = ""
    why: str = ""


def generation_identity(index: PhotoIndex) -> dict[str, Any]:
    """Which generation an index is: its name, and the directory's inode and mtime, so that
    an index directory rebuilt from scratch (names restart at gen-000001) is not mistaken
    for the one the graphs were synced with."""
    try:
        stat = index.generation.stat()
        return {"name": index.generation.name, "ino": stat.st_ino,
                "mtime_ns": stat.st_mtime_ns, "count": len(index)}
    except OSError:
        return {"name": index.generation.name, "count": len(index)}


def row_signatures(index: PhotoIndex) -> np.ndarray:
    """int64 (N, 2): (size, mtime_ns) of every row, in row order."""
    return np.asarray(index.signature_array, dtype=np.int64).reshape(len(index), 2)


def current_members(index: PhotoIndex) -> tuple[np.ndarray, np.ndarray]:
    """(members, rows): int64 (N, 3) key, size, mtime_ns of the generation's photos sorted by
    key, and the row of each."""
    keys = np.asarray(index.keys, dtype=np.int64)
    if not len(keys):
        return np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = np.argsort(keys, kind="stable")
    members = np.column_stack([keys, row_signatures(index)])[rows]
    if np.any(members[1:, 0] == members[:-1, 0]):
        raise BackendError(f"index {index.root} has duplicate photo keys; rebuild it")
    return members, rows


def diff_members(stored: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys to remove, keys to add) turning `stored` into `current` (both sorted by key).

    A key whose signature changed is in both: its old vector goes, the new one comes.
    """
    old_keys, new_keys = stored[:, 0], current[:, 0]
    in_new = np.isin(old_keys, new_keys, assume_unique=True)
    in_old = np.isin(new_keys, old_keys, assume_unique=True)
    common_old, common_new = stored[in_new], current[in_old]  # same keys, same order
    changed = common_new[np.any(common_old[:, 1:] != common_new[:, 1:], axis=1), 0]
    return (np.concatenate([old_keys[~in_new], changed]),
            np.concatenate([changed, new_keys[~in_old]]))


def default_ef_search(count: int) -> int:
    """The search breadth for a graph of `count` vectors: 64 up to 100k, growing as
    count^0.6 to 256 at 1M (recall@10 >= .95 at both, measured), at most 512."""
    ef = 64 * (max(count, 1) / 100_000) ** 0.6
    return int(min(512, max(64, 16 * round(ef / 16))))


@dataclass(frozen=True)
class SearchPlan:
    """How one exclusion mask is searched (computed once per distinct mask).

    `split`: the mask is the stored flags but for `blocked` unflagged rows and the flagged
    rows in `allowed_flagged` (moderation overrides), so the unflagged graph gives results.
    """

    split: bool
    blocked: int = 0
    allowed_flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    allowed: int = 0


class HnswBackend:
    """Searches the index through persisted usearch HNSW graphs; see the module docstring."""

    name = "hnsw"

    def __init__(self, index: PhotoIndex, graphs: dict[str, Any], ef_search: int | None,
                 report: SyncReport) -> None:
        self.index = index
        self.graphs: dict[str, Any] | None = graphs
        self.sync_report = report
        self.flags = stored_flags(index)
        self.sizes = {part: len(graph) for part, graph in graphs.items()}
        self.ef_search = int(ef_search or default_ef_search(len(index)))
        # Both graphs walk with the breadth of the whole collection: the unflagged graph is
        # smaller, but a wider beam there costs little and keeps recall (1M: .998 at ef 256
        # against .973 at its own size's 80).
        for graph in graphs.values():
            graph.expansion_search = self.ef_search
        self._rows = KeyMap(np.asarray(index.keys, dtype=np.int64))
        # The stored matrix as a plain array over the same mapping: fancy indexing a
        # `np.memmap` costs ~0.2 ms a call in subclass bookkeeping, this does not.
        self._matrix = np.asarray(index.embeddings)
        self._plan: tuple[bytes, SearchPlan] | None = None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, index: PhotoIndex, *, directory: Path | None = None,
             ef_search: int | None = None, connectivity: int | None = None,
             expansion_add: int | None = None, dtype: str | None = None,
             rebuild_share: float = REBUILD_SHARE, threads: int = 0) -> HnswBackend:
        """The backend over `index`, its graphs synced with the live generation and saved.

        `directory` defaults to `INDEX_DIR/hnsw`. `ef_search` is the search breadth (default:
        `default_ef_search` of the collection's size; a walk never uses less than the
        candidates it returns); `connectivity` (M), `expansion_add` (efConstruction) and
        `dtype` (i8, f16, f32) are build parameters: changing one rebuilds the graphs.
        `threads` = 0 builds on every core.
        """
        params = BuildParams(connectivity or CONNECTIVITY, expansion_add or EXPANSION_ADD,
                             dtype or VECTOR_DTYPE)
        store = GraphStore(directory or index.root / "hnsw", params, rebuild_share, threads)
        graphs, report = store.sync(index)
        return cls(index, graphs, ef_search, report)

    # -- searching -------------------------------------------------------------------------
    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        total = len(self.index)
        if total == 0 or k <= 0:
            return Ranking([], 0)
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=bool)
            if exclude.shape != (total,):
                raise ValueError(f"exclude has {len(exclude)} entries for {total} rows")
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        ranking: Ranking | None = None
        if self.graphs is not None:
            plan = self.plan(exclude)
            if plan.split and exclude is not None:
                ranking = self._split_ranked(query, k, exclude, plan)
            else:
                ranking = self._merged_ranked(query, k, exclude)
        if ranking is None:
            ranking = rank_scores(scores_of(self.index.embeddings, query), k, exclude)
        return ranking

    def plan(self, exclude: np.ndarray | None) -> SearchPlan:
        """The `SearchPlan` of a mask; the last one is cached (the engine's mask changes
        only with moderation), compared by content, not identity."""
        if exclude is None or not self.sizes.get(FLAGGED):
            return SearchPlan(False)
        cached, content = self._plan, exclude.tobytes()  # 1 MB at 1M rows: ~0.1 ms
        if cached is not None and cached[0] == content:
            return cached[1]
        allowed_flagged = np.flatnonzero(self.flags & ~exclude)
        blocked = int(np.count_nonzero(exclude & ~self.flags))
        unflagged = len(self.flags) - self.sizes[FLAGGED]
        few = min(MAX_ALLOWED_FLAGGED, self.sizes[FLAGGED] * ALLOWED_FLAGGED_SHARE)
        split = len(allowed_flagged) <= few and blocked <= unflagged // 2
        plan = SearchPlan(split, blocked, allowed_flagged,
                          len(exclude) - int(np.count_nonzero(exclude)))
        self._plan = (content, plan)
        return plan

    def _split_ranked(self, query: np.ndarray, k: int, exclude: np.ndarray,
                      plan: SearchPlan) -> Ranking | None:
        """Results from the unflagged graph (+ flagged rows the mask allows, scored exactly),
        withheld flagged rows from the flagged graph; None → scan exactly."""
        unflagged = self.sizes[UNFLAGGED]
        total = len(self.index)
        extra_rows = plan.allowed_flagged
        extra_scores = self._exact(extra_rows, query)
        # `base.over_fetch` over the unflagged graph, where `plan.blocked` rows are excluded.
        want = k if not plan.blocked else min(unflagged, math.ceil(
            k * unflagged / max(1, unflagged - plan.blocked) * 1.5) + 16)
        while True:
            rows, scores = self._candidates(UNFLAGGED, query, min(unflagged, 2 * want))
            allowed = np.sort(np.concatenate([scores[~exclude[rows]], extra_scores]))[::-1]
            if len(allowed) >= k:
                break
            if len(rows) >= unflagged or 4 * want > min(MAX_CANDIDATES, total * FALLBACK_SHARE):
                return None  # the allowed rows run out (withheld = all excluded) or are rare
            want *= 2
        last = float(allowed[k - 1])
        # The flagged rows ranked above the k-th result: about k × flagged / allowed of them.
        flagged = self.sizes[FLAGGED]
        count = min(flagged, 2 * max(k, math.ceil(k * flagged / max(1, plan.allowed))))
        while True:
            f_rows, f_scores = self._candidates(FLAGGED, query, count)
            if count >= flagged or not len(f_scores) or f_scores.min() < last:
                break
            if 2 * count > MAX_CANDIDATES:
                return None  # thousands of flagged photos above: the exact scan is cheaper
            count = min(flagged, 2 * count)
        return self._rank(np.concatenate([rows, f_rows, extra_rows]),
                          np.concatenate([scores, f_scores, extra_scores]), k, exclude)

    def _merged_ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None
                       ) -> Ranking | None:
        """Candidates from every graph, merged; doubled while fewer than k are allowed."""
        total = len(self.index)
        want = max(min(k, total), over_fetch(k, exclude, total))
        while want < total * FALLBACK_SHARE and want <= MAX_CANDIDATES:
            parts = [self._candidates(part, query, min(size, 2 * want))
                     for part, size in self.sizes.items() if size]
            ranking = self._rank(np.concatenate([r for r, _ in parts]),
                                 np.concatenate([s for _, s in parts]), k, exclude)
            if ranking is not None:
                return ranking
            want *= 2
        return None

    @staticmethod
    def _rank(rows: np.ndarray, scores: np.ndarray, k: int, exclude: np.ndarray | None
              ) -> Ranking | None:
        """`ranking_from_candidates` over candidates of several sources (deduplicated)."""
        rows, first = np.unique(rows, return_index=True)
        scores = scores[first]
        order = np.lexsort((rows, -scores))  # best first; ties by row, like a stable scan
        return ranking_from_candidates(rows[order], scores[order], k, exclude,
                                       exhaustive=False)

    def _candidates(self, part: str, query: np.ndarray, count: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """One graph's `count` nearest rows with exact scores (rows of the live generation).

        usearch walks with a beam of max(expansion_search, count), so efSearch is never
        below the candidate count."""
        assert self.graphs is not None
        if count <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        matches = self.graphs[part].search(query, count, threads=1)
        rows = self._rows.rows(np.asarray(matches.keys, dtype=np.int64))
        rows = rows[rows >= 0]
        return rows, self._exact(rows, query)

    def _exact(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact float32 scores of `rows` from the stored embeddings (read in row order)."""
        if not len(rows):
            return np.zeros(0, dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        scores = np.empty(len(rows), dtype=np.float32)
        scores[order] = np.asarray(self._matrix[rows[order]], dtype=np.float32) @ query
        return scores

    def close(self) -> None:
        self.graphs = None


def sync(index: PhotoIndex, **options: Any) -> SyncReport:
    """Bring the persisted graphs of `index` up to date (after `python -m engine index`), so
    that the first query does not pay for it; returns what was done."""
    backend = HnswBackend.open(index, **options)
    report = backend.sync_report
    backend.close()
    return report


# ---------------------------------------------------------------------------- persistence


class GraphStore:
    """The `hnsw/` directory: reads, patches, builds and atomically writes the graphs."""

    def __init__(self, directory: Path, params: BuildParams, rebuild_share: float,
                 threads: int) -> None:
        self.directory = directory
        self.params = params
        self.rebuild_share = rebuild_share
        self.threads = threads

    @property
    def lock_path(self) -> Path:
        return self.directory.parent / f".{self.directory.name}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[bool]:
        """Hold the lock; yields False (read-only: nothing is written) where the directory
        or the lock file cannot be created, e.g. an index on a read-only mount."""
        with contextlib.ExitStack() as stack:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                stack.enter_context(exclusive_lock(self.lock_path))
                writable = True
            except OSError as error:
                log.warning("hnsw: cannot write %s (%s): the graphs are kept in memory only",
                            self.directory, error)
                writable = False
            yield writable

    def sync(self, index: PhotoIndex) -> tuple[dict[str, Any], SyncReport]:
        """(graphs, report): the graphs of `index`'s live generation, saved when possible."""
        started = time.perf_counter()
        with self._locked() as writable:
            graphs, report = self._sync(index, writable)
        report.seconds = time.perf_counter() - started
        report.count = len(index)
        if report.action != "unchanged":
            log.info("hnsw %s: %s (%s), +%d -%d, %d photos, %.1f s", self.directory,
                     report.action, report.reason, report.added, report.removed,
                     report.count, report.seconds)
        return graphs, report

    def _sync(self, index: PhotoIndex, writable: bool) -> tuple[dict[str, Any], SyncReport]:
        state, reason = self._read_state(index)
        identity = generation_identity(index)
        if state is not None and state.generation == identity:
            graphs = {part: self._load(state.dim, state.parts[part], view=True)
                      for part in PARTS}
            if all(g is not None and len(g) == state.parts[p].count for p, g in graphs.items()
                   ) and sum(len(g) for g in graphs.values()) == len(index):
                return graphs, SyncReport("unchanged")
            reason, state = "graph file unreadable or does not match its state", None
        members, rows = current_members(index)
        flagged = stored_flags(index)[rows]
        report = SyncReport("incremental", f"synced with {identity['name']}")
        outcomes = {part: self._sync_part(index, part, state, reason, members[chosen],
                                          rows[chosen], report)
                    for part, chosen in ((UNFLAGGED, ~flagged), (FLAGGED, flagged))}
        whys = [f"{part}: {outcome.why}" for part, outcome in outcomes.items() if outcome.why]
        if whys:
            report.action, report.reason = "built", "; ".join(whys)
            report.built = [part for part, outcome in outcomes.items() if outcome.why]
        subsets = {UNFLAGGED: members[~flagged], FLAGGED: members[flagged]}
        self._save(report, writable,
                   lambda: self._write(outcomes, subsets, index, identity, state))
        return {part: outcome.graph for part, outcome in outcomes.items()}, report

    def _sync_part(self, index: PhotoIndex, part: str, state: _State | None, reason: str,
                   current: np.ndarray, rows: np.ndarray, report: SyncReport) -> _Outcome:
        """Graph `part` brought in line with `current` (its members sorted by key, and their
        `rows`): kept, patched, or built when it cannot be patched (`_Outcome.why`)."""
        why = reason or "no graph saved"
        if state is not None:
            previous = state.parts[part]
            stored = self._load_members(previous)
            if stored is None:
                why = "members file unreadable or inconsistent"
            else:
                remove, add = diff_members(stored, current)
                removed = previous.removed_since_build + len(remove)
                if removed > self.rebuild_share * max(len(current), 1):
                    why = f"degraded: {removed} removals since its build, {len(current)} left"
                else:
                    graph = self._load(state.dim, previous, view=not (len(remove) or len(add)))
                    if graph is not None and len(graph) == len(stored):
                        if not (len(remove) or len(add)):
                            return _Outcome(graph, record=previous)
                        self._patch(graph, index, remove, add)
                        report.added += len(add)
                        report.removed += len(remove)
                        return _Outcome(graph, removed_since_build=removed,
                                        built=previous.built)
                    why = "graph file unreadable or does not match its state"
        graph = self._new_graph(index.dim)
        order = np.argsort(rows, kind="stable")  # read the memory map in row order
        self._add_rows(graph, index, current[order, 0], rows[order])
        report.added += len(rows)
        return _Outcome(graph, why=why)

    # -- reading ---------------------------------------------------------------------------
    def _read_state(self, index: PhotoIndex) -> tuple[_State | None, str]:
        """The saved state when it fits `index` and these build parameters, else (None, why)."""
        path = self.directory / STATE
        if not path.is_file():
            return None, "no graph saved"
        try:
            state = _State.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("hnsw: state %s unreadable (%s): rebuilding", path, error)
            return None, f"state file unreadable: {error}"
        if state.library != LIBRARY:
            return None, f"graphs built by {state.library}"
        if state.model != index.model or state.dim != index.dim:
            return None, (f"graphs built for {state.model} (dim {state.dim}), index is "
                          f"{index.model} (dim {index.dim})")
        if state.params != self.params:
            return None, f"build parameters changed: {state.params} → {self.params}"
        return state, ""

    def _load(self, dim: int, part: _Part, view: bool) -> Any:
        """A saved graph (memory-mapped when `view`), or None when unreadable."""
        from usearch.index import Index

        if part.count == 0:
            return self._new_graph(dim)
        path = self.directory / part.graph
        try:
            graph = Index.restore(str(path), view=view)
        except Exception as error:  # usearch raises RuntimeError/ValueError on bad files
            log.warning("hnsw: graph %s unreadable (%s)", path, error)
            return None
        if graph is None or graph.ndim != dim:
            log.warning("hnsw: graph %s missing or of another dimension", path)
            return None
        return graph

    def _load_members(self, part: _Part) -> np.ndarray | None:
        try:
            members = np.load(self.directory / part.members)
        except (OSError, ValueError, EOFError) as error:
            log.warning("hnsw: members %s unreadable (%s)", part.members, error)
            return None
        if members.ndim != 2 or members.shape[1] != 3 or len(members) != part.count:
            return None
        return np.asarray(members, dtype=np.int64)

    # -- changing --------------------------------------------------------------------------
    def _new_graph(self, dim: int) -> Any:
        from usearch.index import Index

        return Index(ndim=dim, metric="ip", dtype=self.params.dtype,
                     connectivity=self.params.connectivity,
                     expansion_add=self.params.expansion_add)

    def _patch(self, graph: Any, index: PhotoIndex, remove: np.ndarray,
               add: np.ndarray) -> None:
        if len(remove):
            graph.remove(remove.astype(np.uint64))
        if len(add):
            rows = KeyMap(np.asarray(index.keys, dtype=np.int64)).rows(add)
            order = np.argsort(rows, kind="stable")  # read the memory map in order
            self._add_rows(graph, index, add[order], rows[order])

    def _add_rows(self, graph: Any, index: PhotoIndex, keys: np.ndarray,
                  rows: np.ndarray) -> None:
        """Add the vectors of `rows` under `keys` (same order; `rows` ascending is fastest)."""
        # A few thousand vectors go in on one thread: the graph is then the same on every
        # run (parallel inserts race for neighbours), at a cost of well under a second.
        threads = self.threads if len(rows) >= PARALLEL_MIN else 1
        for start in range(0, len(rows), ADD_BLOCK):
            block = rows[start:start + ADD_BLOCK]
            vectors = np.ascontiguousarray(index.embeddings[block], dtype=np.float32)
            graph.add(keys[start:start + ADD_BLOCK].astype(np.uint64), vectors,
                      threads=threads)

    def _save(self, report: SyncReport, writable: bool, write: Callable[[], None]) -> None:
        """Run `write` when the directory is writable; a failure (disk full) keeps the graphs
        in memory for this process rather than failing the search, and says so."""
        if writable:
            try:
                write()
                return
            except OSError as error:
                log.warning("hnsw: could not save the graphs in %s (%s): kept in memory only",
                            self.directory, error)
        report.action = "memory"

    # -- writing ---------------------------------------------------------------------------
    def _write(self, outcomes: dict[str, _Outcome], subsets: dict[str, np.ndarray],
               index: PhotoIndex, identity: dict[str, Any], previous: _State | None) -> None:
        """Write the numbered files of every changed graph, then swap `state.json` (the
        commit); an unchanged graph keeps its files."""
        version = self._next_version(previous)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        records: dict[str, _Part] = {}
        for part, outcome in outcomes.items():
            if outcome.record is not None:
                records[part] = outcome.record
                continue
            graph_name = f"graph-{version:06d}-{part}.usearch"
            members_name = f"members-{version:06d}-{part}.npy"
            subset = subsets[part]
            if len(subset):
                _atomic(self.directory / graph_name, partial(_save_graph, outcome.graph))
            _atomic(self.directory / members_name, partial(_save_npy, subset))
            records[part] = _Part(graph_name, members_name, len(subset),
                                  outcome.removed_since_build, outcome.built or now)
        self._write_state(_State(LIBRARY, self.params, index.model, index.dim, identity,
                                 records, version))

    def _write_state(self, state: _State) -> None:
        """Swap in `state.json` (the commit point), then delete files it does not name."""
        _atomic(self.directory / STATE,
                lambda tmp: tmp.write_text(state.to_json(), encoding="utf-8"))
        _fsync_directory(self.directory)
        named = {STATE} | {p.graph for p in state.parts.values()} | \
            {p.members for p in state.parts.values()}
        for old in self.directory.iterdir():
            if OWN_FILE.fullmatch(old.name) is not None and old.name not in named:
                with contextlib.suppress(OSError):
                    old.unlink()

    def _next_version(self, previous: _State | None) -> int:
        """Above every number in use, so a new file never overwrites one a reader maps."""
        numbers = [previous.version] if previous is not None else []
        for path in self.directory.iterdir():
            match = OWN_FILE.fullmatch(path.name)
            number = match and (match.group(1) or match.group(2))
            if number:
                numbers.append(int(number))
        return max(numbers, default=0) + 1


def _save_npy(array: np.ndarray, path: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def _save_graph(graph: Any, path: Path) -> None:
    graph.save(str(path))


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` through a temporary name, fsync it, rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
