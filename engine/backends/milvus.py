"""The Milvus backend: the index's vectors in a Milvus collection, searched by HNSW.

Two deployments, one code path (`pymilvus.MilvusClient`):

* **Milvus Lite** (the default, and what the tests run): `uri` is a path ending in `.db`,
  by default `INDEX_DIR/milvus.db`. milvus-lite 3.x is pure Python: pymilvus sees the `.db`
  suffix and starts an in-process gRPC server on a free localhost port (a thread, not a
  subprocess; ~0.2 s on an empty file, ~0.6 s with a collection). The `.db` path is a
  *directory* (WAL, Parquet segments, FAISS index files, a manifest) holding an advisory
  `flock`: **one process per file**. A second process fails with "Open local milvus failed"
  (reported here as `BackendError`); to share one, serve it with
  `milvus-lite server --data-dir INDEX_DIR/milvus.db --port 19530` and pass that URI. Inside
  one process every client of a path shares one server, which lives until the process exits
  (`close()` closes the client only; stopping the server would cut off other backends of the
  same file, e.g. the one an engine opens on a new generation before closing the old one).
  Lite supports FLAT, BRUTE_FORCE, HNSW, HNSW_SQ, IVF_FLAT, IVF_SQ8 and AUTOINDEX over FAISS,
  per segment; filters are evaluated into a row bitmap handed to FAISS as an `IDSelector`, so a
  filtered search is pre-filtered (no recall loss from post-filtering), but a very selective
  filter starves the HNSW walk (see `ranked`). No filter templates (`{name}` placeholders):
  lists are written into the expression. Lite builds a flushed segment's HNSW in a background
  thread; until it is done that segment is searched by brute force (correct, slower), and a
  process that exits first finishes the build at shutdown (or the next load does). Measured on
  2 busy shared cores, 100k × 256-d: insert + flush 16 s, background HNSW build 73 s, 213 MB
  on disk, reopen in a new process 2.4 s (no writes), search p50 130 ms unfiltered and 170 ms
  with 15% flagged (two requests, see `ranked`), recall@10 1.0; Lite's per-row Python
  bookkeeping dominates a search. A `key not in [...]` of 10 000 keys adds ~45 ms of parsing.
* **A Milvus cluster** (production): `uri="http://host:19530"` (and `token="user:password"`
  or an API key). Sharding, replicas and durability are Milvus's job, not ours; this module
  only creates, syncs, loads and searches one collection. Not testable here (no server).

Collection layout: `key` INT64 primary key = `photo_key(path)` (stable across generations,
so an update only touches changed photos), `vector` FLOAT_VECTOR(dim) with an HNSW index
under inner product (rows are L2-normalised, so IP is cosine), `flagged` BOOL = the child flag
stored in the generation, and `size`/`mtime_ns` INT64 = the file signature. Collection
properties record the model, dim and a fingerprint of the generation last synced.

`open` brings the collection in line with the live generation: unchanged fingerprint → no
write at all; otherwise it reads (key, signature, flag) of every stored row, deletes keys the
generation no longer has, upserts rows whose signature or flag changed, inserts new ones
(vectors from the stored embeddings: switching backends never re-embeds), flushes and records
the new fingerprint. A collection built for another model or dim is dropped and rebuilt.

`ranked` turns the engine's exclusion mask (detector flags combined with moderation
overrides) into a filter on the stored flag plus the small difference; see `FilterPlan`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from engine.backends.base import BackendError, KeyMap, RankedRow, Ranking, stored_flags
from engine.backends.exact import rank_scores, scores_of

if TYPE_CHECKING:
    from engine.index import PhotoIndex

log = logging.getLogger(__name__)

LITE_FILE = "milvus.db"
SCHEMA_VERSION = "1"
PROPERTY_PREFIX = "photo_index."
P_SCHEMA = PROPERTY_PREFIX + "schema"
P_MODEL = PROPERTY_PREFIX + "model"
P_DIM = PROPERTY_PREFIX + "dim"
P_FINGERPRINT = PROPERTY_PREFIX + "fingerprint"
P_GENERATION = PROPERTY_PREFIX + "generation"
FIELDS = ("key", "vector", "flagged", "size", "mtime_ns")

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
EF_SEARCH = 128  # raised to the limit when a search asks for more (Milvus requires ef >= k)
MAX_TOPK = 16384  # Milvus's limit on limit+offset of one search
MAX_FILTER_KEYS = 10_000  # longest key list written into a filter before scanning exactly
LOCAL_ROWS = 4096  # a side of the mask this small is scored from the stored embeddings
WITHHELD_FIRST_LIMIT = 128  # first look at the excluded set when counting withheld rows
BATCH_BYTES = 4 << 20  # one insert/upsert request: ~4 MiB of vectors (gRPC limit is 64 MiB)
PROGRESS_MIN_ROWS = 5000  # smaller syncs run without a progress bar
CONSISTENCY = "Session"  # read-your-writes for the client that synced; see `_search`


@dataclass(frozen=True)
class SyncReport:
    """What `MilvusBackend.open` wrote to bring the collection in line with the generation."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    rebuilt: bool = False  # the collection was (re)created from scratch
    skipped: bool = False  # the fingerprint matched: nothing was read or written
    seconds: float = 0.0

    @property
    def writes(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class FilterPlan:
    """A Milvus filter for the allowed rows of one exclusion mask, and its complement.

    Three exact encodings of the same set; the one with the shortest key list wins:

    * flag-based: `flagged == false`, corrected by the rows where the mask and the stored
      flag disagree (moderation: blocked-but-unflagged → `key not in [...]`,
      allowed-but-flagged → `or key in [...]`). The usual case: a handful of overrides.
    * `key not in [every excluded key]`: few exclusions but flags that disagree wholesale
      (the engine scored the photos with another detector than the stored one).
    * `key in [every allowed key]`: almost everything excluded.

    When even the shortest list exceeds `MAX_FILTER_KEYS` there is no plan and the backend
    scans the stored embeddings exactly (logged): a filter that long costs more to parse than
    the scan, and only a detector change without `reflag` produces it.
    """

    allowed: str | None  # None: no filter (nothing excluded)
    excluded: str | None
    keys: int  # length of the key lists written into the expressions


def collection_name(model: str) -> str:
    """A Milvus collection name for `model`: letters, digits and `_`, a letter first, ≤255
    characters; a hash of the full name keeps models that sanitise alike apart."""
    slug = re.sub(r"[^0-9A-Za-z_]+", "_", model).strip("_")[:48] or "model"
    digest = hashlib.blake2b(model.encode("utf-8"), digest_size=4).hexdigest()
    return f"photos_{slug}_{digest}"


def generation_fingerprint(index: PhotoIndex, flags: np.ndarray) -> str:
    """Hash of what the collection mirrors: model, photos (paths and signatures) and stored
    flags; not the generation's name, so a new generation with the same content (a re-run
    that only retried unreadable files) costs nothing. Embeddings are not hashed: a vector
    changes only with its file signature or the model."""
    digest = hashlib.sha256()
    digest.update(f"{index.model}\n{index.dim}\n{len(index)}\n".encode())
    digest.update("\n".join(index.paths).encode("utf-8"))
    digest.update(np.ascontiguousarray(index.signature_array, dtype="<i8").tobytes())
    digest.update(np.packbits(np.asarray(flags, dtype=bool)).tobytes())
    return digest.hexdigest()


def _key_list(keys: np.ndarray) -> str:
    return "[" + ",".join(str(int(k)) for k in np.sort(keys)) + "]"


def plan_filter(keys: np.ndarray, flags: np.ndarray, exclude: np.ndarray | None,
                max_keys: int = MAX_FILTER_KEYS) -> FilterPlan | None:
    """The shortest exact filter for the rows `exclude` allows, given the stored `flags`
    (see `FilterPlan`); None when every encoding needs more than `max_keys` keys."""
    if exclude is None or not exclude.any():
        return FilterPlan(None, None, 0)
    block = keys[exclude & ~flags]  # excluded but stored unflagged (moderation block)
    allow = keys[flags & ~exclude]  # stored flagged but allowed (moderation allow)
    excluded_keys = keys[exclude]
    allowed_keys = keys[~exclude]
    sizes = {"flags": len(block) + len(allow), "excluded": len(excluded_keys),
             "allowed": len(allowed_keys)}
    best = min(sizes, key=lambda name: sizes[name])  # dict order breaks ties: flags first
    if sizes[best] > max_keys:
        return None
    if best == "flags":
        allowed = "flagged == false"
        excluded = "flagged == true"
        if len(block):
            allowed = f"(flagged == false and key not in {_key_list(block)})"
            excluded = f"{excluded} or key in {_key_list(block)}"
        if len(allow):
            allowed = f"{allowed} or key in {_key_list(allow)}"
            excluded = f"({excluded}) and key not in {_key_list(allow)}"
        return FilterPlan(allowed, excluded, sizes[best])
    if best == "excluded":
        listed = _key_list(excluded_keys)
        return FilterPlan(f"key not in {listed}", f"key in {listed}", sizes[best])
    listed = _key_list(allowed_keys)
    return FilterPlan(f"key in {listed}", f"key not in {listed}", sizes[best])


class MilvusBackend:
    """An index's vectors in a Milvus collection (Lite file or cluster), kept in sync on open.

    Thread-safe for searches as far as `MilvusClient` is (one gRPC channel).
    """

    name = "milvus"

    def __init__(self, index: PhotoIndex, client: Any, collection: str, uri: str,
                 sync: SyncReport) -> None:
        self.index = index
        self.client = client
        self.collection = collection
        self.uri = uri
        self.sync = sync
        self.keymap = KeyMap(index.keys)
        self.flags = stored_flags(index)
        # A side of the exclusion mask this small is scored from the stored embeddings (see
        # `ranked`); 0 sends every search to Milvus (tests of the Milvus paths do that).
        self.local_rows = LOCAL_ROWS
        self._plan_cache: tuple[bytes, FilterPlan | None] | None = None
        self._closed = False

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, index: PhotoIndex, *, uri: str | None = None, collection: str | None = None,
             token: str | None = None) -> MilvusBackend:
        """Connect, create or sync the collection for `index`'s live generation, load it.

        `uri`: a `.db` path (Milvus Lite, default `INDEX_DIR/milvus.db`) or `http(s)://host:port`
        of a Milvus server. `collection`: defaults to a name derived from the model; give each
        index its own when several share one cluster. `token`: `user:password` or an API key.
        """
        try:
            from pymilvus import MilvusClient, MilvusException
        except ImportError as error:
            raise BackendError("the milvus backend needs pymilvus: pip install "
                               "'pymilvus[milvus-lite]'") from error
        target = uri or str(index.root / LITE_FILE)
        name = collection or collection_name(index.model)
        try:
            client = MilvusClient(uri=target, token=token or "")
        except MilvusException as error:
            lite = "" if "://" in target else (
                " A Milvus Lite file is usable by one process at a time: stop the other one, "
                f"or serve the file with `milvus-lite server --data-dir {target} --port 19530` "
                "and use uri=http://127.0.0.1:19530.")
            raise BackendError(f"cannot open Milvus at {target}: {error.message}.{lite}"
                               ) from error
        try:
            report = _sync(client, name, index)
            client.load_collection(name)
        except MilvusException as error:
            client.close()
            raise BackendError(f"Milvus at {target} failed to sync collection {name!r}: "
                               f"{error.message} (check the server, or drop the collection "
                               "to rebuild it from the index)") from error
        except BaseException:
            client.close()
            raise
        log.info("milvus: %s in %s synced to %s (%d inserted, %d updated, %d deleted, "
                 "%d unchanged%s) in %.1f s", name, target, index.generation.name,
                 report.inserted, report.updated, report.deleted, report.unchanged,
                 ", rebuilt" if report.rebuilt else "", report.seconds)
        return cls(index, client, name, target, report)

    # -- search --------------------------------------------------------------------------
    def ranked(self, query: np.ndarray, k: int, exclude: np.ndarray | None = None) -> Ranking:
        """The `k` best allowed rows by HNSW search in Milvus, with `Ranking`'s withheld counts.

        A small side of the mask (at most `local_rows`, default `LOCAL_ROWS`) is scored here
        from the stored embeddings instead: exact, cheaper than a request, and HNSW with a
        very selective filter misses allowed rows (Lite hands FAISS an `IDSelector`; the walk
        runs out of allowed neighbours). Should Milvus still return fewer allowed rows than
        exist, the answer comes from an exact scan.

        Withheld rows are counted exactly when at most `local_rows` are excluded (the usual
        case); otherwise by a second search over the excluded set, which first asks for
        `WITHHELD_FIRST_LIMIT` rows (at least k) and widens while every answer still scores
        at or above the last returned row, up to `MAX_TOPK`: beyond that the count is a lower
        bound, and like the hits it is approximate (the ANN may miss an excluded row).
        """
        total = len(self.index)
        if total == 0 or k <= 0:
            return Ranking([], 0)
        mask = None if exclude is None else np.asarray(exclude, dtype=bool)
        if mask is not None and not mask.any():
            mask = None
        excluded_total = 0 if mask is None else int(np.count_nonzero(mask))
        allowed_total = total - excluded_total
        local_allowed = mask is not None and allowed_total <= self.local_rows
        local_excluded = excluded_total <= self.local_rows
        plan: FilterPlan | None = FilterPlan(None, None, 0)
        if mask is not None and not (local_allowed and local_excluded):
            plan = self._plan(mask)
        if plan is None:
            return self._exact(query, k, mask)  # logged once per mask by `_plan`
        if k > MAX_TOPK:
            log.warning("milvus: k=%d exceeds Milvus's limit %d; scanning the stored "
                        "embeddings exactly", k, MAX_TOPK)
            return self._exact(query, k, mask)
        want = min(k, allowed_total)
        if want == 0:
            return Ranking([], excluded_total)
        if local_allowed:
            assert mask is not None
            rows, scores = self._local_top(query, np.flatnonzero(~mask), want)
        else:
            rows, scores = self._search(query, want, plan.allowed, mask)
            if len(rows) < want:
                log.info("milvus: %d of %d allowed rows came back; scanning exactly",
                         len(rows), want)
                return self._exact(query, k, mask)
        if mask is None:
            return Ranking([RankedRow(int(r), float(s), 0) for r, s in zip(rows, scores,
                                                                            strict=True)], 0)
        last = float(scores[-1])
        if local_excluded:
            excluded_scores = scores_of(self._vectors(np.flatnonzero(mask)), query)
            above = excluded_scores[excluded_scores >= last]
        else:
            above = self._excluded_above(query, last, plan.excluded, excluded_total, k)
        above = np.sort(above)
        ranked = [RankedRow(int(r), float(s),
                            int(len(above) - np.searchsorted(above, s, side="left")))
                  for r, s in zip(rows, scores, strict=True)]
        withheld = excluded_total if len(rows) < k else len(above)
        return Ranking(ranked, withheld)

    def close(self) -> None:
        """Close the client (a Lite server stays up until the process exits: see above)."""
        if not self._closed:
            self._closed = True
            self.client.close()

    # -- internals -----------------------------------------------------------------------
    def _plan(self, mask: np.ndarray | None) -> FilterPlan | None:
        """`plan_filter` for `mask`, cached: the mask changes only with moderation."""
        if mask is None:
            return FilterPlan(None, None, 0)
        fingerprint = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()
        if self._plan_cache is None or self._plan_cache[0] != fingerprint:
            plan = plan_filter(self.index.keys, self.flags, mask)
            if plan is None:
                log.warning("milvus: the exclusions differ from the stored flags in more than "
                            "%d photos: scanning the stored embeddings exactly until they "
                            "agree (run `python -m engine reflag --index %s`)",
                            MAX_FILTER_KEYS, self.index.root)
            self._plan_cache = (fingerprint, plan)
        return self._plan_cache[1]

    def _exact(self, query: np.ndarray, k: int, mask: np.ndarray | None) -> Ranking:
        return rank_scores(scores_of(self.index.embeddings, query), k, mask)

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored embeddings of `rows` as float32 (a copy of those rows only)."""
        return np.asarray(self.index.embeddings[rows], dtype=np.float32)

    def _local_top(self, query: np.ndarray, rows: np.ndarray, want: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The `want` best of a few `rows`, scored from the stored embeddings, best first."""
        scores = scores_of(self._vectors(rows), query)
        order = np.argsort(-scores, kind="stable")[:want]
        return rows[order], scores[order]

    def _raw_search(self, query: np.ndarray, limit: int, expr: str | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Keys and scores of one Milvus search, best first."""
        vector = np.asarray(query, dtype=np.float32).reshape(-1)
        hits = self.client.search(
            self.collection, data=[vector], anns_field="vector", limit=limit,
            filter=expr or "", output_fields=[], consistency_level=CONSISTENCY,
            search_params={"metric_type": "IP", "params": {"ef": max(EF_SEARCH, limit)}})[0]
        keys = np.fromiter((int(hit["key"]) for hit in hits), dtype=np.int64, count=len(hits))
        scores = np.fromiter((float(hit["distance"]) for hit in hits), dtype=np.float32,
                             count=len(hits))
        return keys, scores

    def _search(self, query: np.ndarray, want: int, expr: str | None, mask: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Up to `want` allowed rows and scores, best first.

        Every hit is checked again here: a key this generation lacks is skipped, and so is a
        row the mask excludes (the collection can lag behind: another process synced it to a
        newer generation, or a cluster replica has not applied the last upsert yet; a flagged
        photo must never slip through). Skipped hits are replaced by asking for more.
        """
        limit = want
        while True:
            keys, scores = self._raw_search(query, limit, expr)
            rows = self.keymap.rows(keys)
            keep = rows >= 0
            if mask is not None:
                keep &= ~mask[np.maximum(rows, 0)]
            rows, kept_scores = rows[keep], scores[keep]
            if len(rows) >= want or len(keys) < limit or limit >= MAX_TOPK:
                return rows[:want], kept_scores[:want]
            limit = min(MAX_TOPK, limit * 2 + (len(keys) - len(rows)))

    def _excluded_above(self, query: np.ndarray, last: float, expr: str | None,
                        excluded_total: int, k: int) -> np.ndarray:
        """Scores of excluded rows at or above `last` (see `ranked` for the cap)."""
        limit = min(excluded_total, MAX_TOPK, max(k, WITHHELD_FIRST_LIMIT))
        while True:
            _, scores = self._raw_search(query, limit, expr)
            above = scores[scores >= last]
            if len(above) < len(scores) or len(scores) < limit or limit >= min(
                    excluded_total, MAX_TOPK):
                return above
            limit = min(excluded_total, MAX_TOPK, limit * 8)


# ----------------------------------------------------------------------------------- sync


def _sync(client: Any, name: str, index: PhotoIndex) -> SyncReport:
    """Create or update collection `name` to mirror `index`'s generation (see module doc)."""
    started = time.perf_counter()
    rebuilt = False
    properties: dict[str, Any] = {}
    if client.has_collection(name):
        description = client.describe_collection(name)
        properties = dict(description.get("properties") or {})
        problem = _mismatch(name, description, properties, index)
        if problem is not None:
            log.warning("milvus: collection %s %s: dropping and rebuilding it", name, problem)
            client.drop_collection(name)
    if not client.has_collection(name):
        _create(client, name, index)
        properties = {}
        rebuilt = True
    elif not _is_live(index):
        # A newer generation is live: its process syncs the collection; writing this one
        # back would undo that. Search what is there (hits are re-checked against this
        # generation in `_search`).
        log.info("milvus: %s is no longer the live generation of %s; not syncing %s",
                 index.generation.name, index.root, name)
        return SyncReport(skipped=True, seconds=time.perf_counter() - started)
    flags = stored_flags(index)
    fingerprint = generation_fingerprint(index, flags)
    if properties.get(P_FINGERPRINT) == fingerprint:
        return SyncReport(unchanged=len(index), skipped=True,
                          seconds=time.perf_counter() - started)
    client.alter_collection_properties(name, properties={P_FINGERPRINT: "syncing"})
    keys = index.keys
    signatures = np.asarray(index.signature_array, dtype=np.int64).reshape(len(index), 2)
    sizes, mtimes = signatures[:, 0], signatures[:, 1]
    if not rebuilt:
        client.load_collection(name)  # queries need a loaded collection (a fresh process)
    stored = _stored_rows(client, name) if not rebuilt else _empty_stored()
    rows = KeyMap(keys).rows(stored["key"])
    gone = stored["key"][rows < 0]
    present = rows >= 0
    matched = rows[present]
    changed = ((stored["size"][present] != sizes[matched])
               | (stored["mtime_ns"][present] != mtimes[matched])
               | (stored["flagged"][present] != flags[matched]))
    update_rows = matched[changed]
    known = np.zeros(len(index), dtype=bool)
    known[matched] = True
    insert_rows = np.flatnonzero(~known)
    for start in range(0, len(gone), MAX_TOPK):
        client.delete(name, ids=[int(k) for k in gone[start:start + MAX_TOPK]])
    _write(client, name, index, insert_rows, keys, flags, sizes, mtimes, upsert=False)
    _write(client, name, index, update_rows, keys, flags, sizes, mtimes, upsert=True)
    if len(gone) or len(insert_rows) or len(update_rows):
        client.flush(name)
    client.alter_collection_properties(name, properties={
        P_FINGERPRINT: fingerprint, P_GENERATION: index.generation.name})
    return SyncReport(inserted=len(insert_rows), updated=len(update_rows), deleted=len(gone),
                      unchanged=int(len(matched) - len(update_rows)), rebuilt=rebuilt,
                      seconds=time.perf_counter() - started)


def _mismatch(name: str, description: dict[str, Any], properties: dict[str, Any],
              index: PhotoIndex) -> str | None:
    """Why the existing collection cannot hold `index` (None when it can).

    Raises `BackendError` for a collection this engine did not create (another schema): it
    may be someone else's data, so it is never dropped.
    """
    fields = {f["name"]: f for f in description.get("fields", [])}
    if set(fields) != set(FIELDS):
        raise BackendError(f"Milvus collection {name!r} exists with fields {sorted(fields)}, "
                           "not the photo index layout; choose another collection name")
    dim = int(fields["vector"].get("params", {}).get("dim", -1))
    if properties.get(P_SCHEMA) != SCHEMA_VERSION:
        return f"has layout version {properties.get(P_SCHEMA)!r}, not {SCHEMA_VERSION}"
    if properties.get(P_MODEL) != index.model:
        return f"holds model {properties.get(P_MODEL)!r}, the index {index.model!r}"
    if dim != index.dim or properties.get(P_DIM) != str(index.dim):
        return f"holds {dim}-d vectors, the index {index.dim}-d"
    return None


def _create(client: Any, name: str, index: PhotoIndex) -> None:
    """An empty collection with the photo layout and an HNSW/IP index."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=index.dim)
    schema.add_field("flagged", DataType.BOOL)
    schema.add_field("size", DataType.INT64)
    schema.add_field("mtime_ns", DataType.INT64)
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                     params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
    client.create_collection(name, schema=schema, consistency_level=CONSISTENCY)
    # sync=False: waiting polls AllocTimestamp, which Milvus Lite does not implement (its
    # gRPC server logs a traceback); an index on an empty collection has nothing to wait for.
    client.create_index(name, params, sync=False)
    client.alter_collection_properties(name, properties={
        P_SCHEMA: SCHEMA_VERSION, P_MODEL: index.model, P_DIM: str(index.dim)})


def _is_live(index: PhotoIndex) -> bool:
    """Whether `index` is still the generation `CURRENT` names."""
    try:
        current = (index.root / "CURRENT").read_text(encoding="utf-8").strip()
    except OSError:
        return True  # an index opened from elsewhere: trust the caller
    return current == index.generation.name


def _empty_stored() -> dict[str, np.ndarray]:
    return {"key": np.zeros(0, np.int64), "size": np.zeros(0, np.int64),
            "mtime_ns": np.zeros(0, np.int64), "flagged": np.zeros(0, bool)}


def _stored_rows(client: Any, name: str) -> dict[str, np.ndarray]:
    """Key, signature and flag of every row in the collection (no vectors), by iterator."""
    columns: dict[str, list[Any]] = {"key": [], "size": [], "mtime_ns": [], "flagged": []}
    iterator = client.query_iterator(name, batch_size=MAX_TOPK, filter="",
                                     output_fields=list(columns))
    try:
        while batch := iterator.next():
            for row in batch:
                for field, values in columns.items():
                    values.append(row[field])
    finally:
        iterator.close()
    return {"key": np.asarray(columns["key"], dtype=np.int64),
            "size": np.asarray(columns["size"], dtype=np.int64),
            "mtime_ns": np.asarray(columns["mtime_ns"], dtype=np.int64),
            "flagged": np.asarray(columns["flagged"], dtype=bool)}


def _batches(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _write(client: Any, name: str, index: PhotoIndex, rows: np.ndarray, keys: np.ndarray,
           flags: np.ndarray, sizes: np.ndarray, mtimes: np.ndarray, *, upsert: bool) -> None:
    """Insert (or upsert) `rows` of the generation in ~`BATCH_BYTES` requests."""
    if not len(rows):
        return
    batch = max(1, BATCH_BYTES // (index.dim * 4 + 64))
    verb = "upsert" if upsert else "insert"
    with tqdm(total=len(rows), desc=f"milvus {verb}", unit="photo",
              disable=len(rows) < PROGRESS_MIN_ROWS) as bar:
        for chunk in _batches(np.sort(rows), batch):
            vectors = np.asarray(index.embeddings[chunk], dtype=np.float32)
            data = [{"key": int(keys[r]), "vector": vectors[i], "flagged": bool(flags[r]),
                     "size": int(sizes[r]), "mtime_ns": int(mtimes[r])}
                    for i, r in enumerate(chunk)]
            if upsert:
                client.upsert(name, data)
            else:
                client.insert(name, data)
            bar.update(len(chunk))


__all__ = ["FilterPlan", "MilvusBackend", "SyncReport", "collection_name",
           "generation_fingerprint", "plan_filter", "stored_flags"]

