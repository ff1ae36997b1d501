"""`python -m engine`: build or update an index, search it, write contact sheets, re-flag
photos of children after a detector or threshold change, and record moderation overrides.

Exit codes: 0 success (also when some photos were skipped), 2 a problem the user can fix
(missing folder, empty or too long query, wrong model, unusable detector or moderation file),
1 anything unexpected.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.backends.base import BackendError
from engine.child_filter import ChildFilter, ChildFilterError
from engine.encoders import DEFAULT_MODEL_SPEC, Encoder, ModelSpecError, load_encoder
from engine.index import IndexError_, PhotoIndex, reflag_index, update_index
from engine.moderation import (
    Decision,
    ModerationError,
    normalize_photo,
    read_overrides,
    review_queue,
    set_decision,
)
from engine.search import QueryError, SearchEngine, SearchResult, validate_query
from engine.settings import EngineSettings, backend_from_settings, child_filter_from_settings

if TYPE_CHECKING:
    from engine.rerank import Reranker

log = logging.getLogger("engine")

BACKENDS = ("exact", "hnsw", "milvus")
REVIEW_LIMIT = 200  # thumbnails on one review page: enough for a sitting, a page that opens fast


class UsageError(Exception):
    """A user-fixable problem reported as one line on stderr with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="build or update the index of a photo folder")
    index.add_argument("photo_dir", type=Path)
    index.add_argument("--index", type=Path, required=True, dest="index_dir")
    index.add_argument("--model",
                       help=f"model spec (default: the index's, else {DEFAULT_MODEL_SPEC})")
    index.add_argument("--batch-size", type=int)
    index.add_argument("--workers", type=int)
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    index.add_argument("--backend", choices=BACKENDS,
                       help="also build/sync this search backend now, so the first query does "
                            "not pay for it (default ENGINE_INDEX_BACKEND)")
    index.add_argument("--dtype", choices=("float32", "float16"),
                       help="storage type of new embeddings (default ENGINE_INDEX_DTYPE)")

    search = sub.add_parser("search", help="search an index with a text query")
    search.add_argument("text", nargs="?", help="the query (or use --queries FILE)")
    search.add_argument("--index", type=Path, required=True, dest="index_dir")
    search.add_argument("-k", type=int, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print one JSON object per query")
    search.add_argument("--queries", type=Path, help="file with one query per line")
    search.add_argument("--html", type=Path, help="write a contact sheet of the results")
    search.add_argument("--model", help="model spec (default: the index's model)")
    search.add_argument("--query-head",
                        help="what embeds the queries of a dual encoder: default (the packaged "
                             "MiniLM query head), full (MiniLM+e5) or an artifact directory "
                             "(default ENGINE_QUERY_HEAD=default)")
    search.add_argument("--russian-e5", action="store_true", default=None,
                        help="Russian queries also read e5 and blend in the model's own text "
                             "head (slower; default ENGINE_RUSSIAN_E5=false)")
    search.add_argument("--backend", choices=BACKENDS,
                        help="how to search the vectors (default ENGINE_INDEX_BACKEND=exact)")
    search.add_argument("--rerank", type=Path,
                        help="re-ranker artifact directory (python -m training seed-study)")
    search.add_argument("--rerank-depth", type=int,
                        help="candidates the re-ranker re-orders (default: the artifact's)")

    reflag = sub.add_parser(
        "reflag", help="score and flag photos of children again (after a detector or "
                       "threshold change), from the stored embeddings: nothing is re-embedded")
    reflag.add_argument("--index", type=Path, required=True, dest="index_dir")
    reflag.add_argument("--model", help="model spec (default: the index's model)")

    moderate = sub.add_parser(
        "moderate", help="force-allow or force-block photos (INDEX_DIR/moderation.csv); "
                         "block > allow > detector flag")
    moderate.add_argument("--index", type=Path, required=True, dest="index_dir")
    action = moderate.add_mutually_exclusive_group(required=True)
    action.add_argument("--allow", nargs="+", metavar="PHOTO",
                        help="show these photos even when flagged (until the file changes)")
    action.add_argument("--block", nargs="+", metavar="PHOTO", help="never show these photos")
    action.add_argument("--clear", nargs="+", metavar="PHOTO",
                        help="remove the override: the detector decides again")
    action.add_argument("--list", action="store_true", help="print the overrides")
    action.add_argument("--review", type=Path, metavar="HTML",
                        help="write a page of the photos the detector hides that nobody has "
                             "reviewed yet, least certain first, with tick boxes that build "
                             "the --allow command")
    moderate.add_argument("--note", default="", help="why (kept in the CSV)")
    moderate.add_argument("--limit", type=int, default=REVIEW_LIMIT,
                          help=f"photos on the review page (default {REVIEW_LIMIT})")
    moderate.add_argument("--model", help="model spec (default: the index's model; only the "
                                          "zero-shot filter loads it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = EngineSettings()
    commands = {"index": run_index, "search": run_search, "reflag": run_reflag,
                "moderate": run_moderate}
    try:
        return commands[args.command](args, settings)
    except (UsageError, IndexError_, ModelSpecError, QueryError, ChildFilterError,
            ModerationError, BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _model_spec(args: argparse.Namespace, settings: EngineSettings, index_dir: Path) -> str:
    """CLI flag, then setting, then the model recorded in the index, then the default."""
    if args.model:
        return str(args.model)
    if settings.model:
        return settings.model
    try:
        return str(PhotoIndex.open(index_dir).manifest.get("model_spec") or DEFAULT_MODEL_SPEC)
    except IndexError_:
        return DEFAULT_MODEL_SPEC


def run_index(args: argparse.Namespace, settings: EngineSettings) -> int:
    photo_dir: Path = args.photo_dir
    if not photo_dir.is_dir():
        raise UsageError(f"photo directory does not exist: {photo_dir}")
    spec = _model_spec(args, settings, args.index_dir)
    encoder = load_encoder(spec)
    child_filter = _child_filter(settings, encoder)
    report = update_index(photo_dir, args.index_dir, encoder, model_spec=spec,
                          batch_size=args.batch_size or settings.batch_size,
                          workers=args.workers or settings.workers, progress=not args.quiet,
                          child_filter=child_filter, dtype=args.dtype or settings.index_dtype,
                          checkpoint_seconds=settings.checkpoint_seconds,
                          batch_delay=settings.test_batch_delay)
    print(f"index {args.index_dir}: {report.total} photos ({report.added} added, "
          f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged)"
          f" with {encoder.name}")
    info = PhotoIndex.open(args.index_dir).child_filter_info
    if info is not None:
        print(f"child filter {info['version']}: {info['flagged']} of {report.total} photos "
              "flagged")
    if report.embedded:
        print(f"embedded {report.embedded} photos in {report.embed_seconds:.1f} s "
              f"({report.photos_per_second:.1f} photos/s)")
    backend_kind = args.backend or settings.index_backend
    if backend_kind != "exact":
        started = time.perf_counter()
        backend = backend_from_settings(settings.model_copy(update={"index_backend":
                                                                   backend_kind}),
                                        PhotoIndex.open(args.index_dir))
        backend.close()
        print(f"{backend_kind} backend in sync ({time.perf_counter() - started:.1f} s)")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable file(s):")
        for item in report.skipped:
            print(f"  {item.path}: {item.error}")
    return 0


def _read_queries(args: argparse.Namespace) -> list[str]:
    if args.queries is not None:
        if args.text is not None:
            raise UsageError("give either a query text or --queries FILE, not both")
        try:
            lines = args.queries.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read queries file {args.queries}: {error}") from error
        queries = [line for line in lines if line.strip()]
        if not queries:
            raise UsageError(f"queries file {args.queries} has no queries")
        return queries
    if args.text is None:
        raise UsageError("give a query text or --queries FILE")
    validate_query(args.text)
    return [args.text]


def run_search(args: argparse.Namespace, settings: EngineSettings) -> int:
    if not args.index_dir.is_dir():
        raise UsageError(f"index directory does not exist: {args.index_dir}")
    queries = _read_queries(args)
    k = args.k if args.k is not None else settings.results
    if k < 1:
        raise UsageError("-k must be at least 1")
    from engine.legal import LegalFilter

    index = PhotoIndex.open(args.index_dir)
    encoder = load_encoder(_model_spec(args, settings, args.index_dir),
                           args.query_head or settings.query_head,
                           settings.russian_e5 if args.russian_e5 is None else args.russian_e5)
    index.require_model(encoder.name)
    if args.backend:
        settings = settings.model_copy(update={"index_backend": args.backend})
    engine = SearchEngine(encoder, index, LegalFilter.default(settings.legal_extra_lexicons),
                          _child_filter(settings, encoder),
                          reranker=_reranker(args, settings, encoder.name),
                          backend=functools.partial(backend_from_settings, settings))
    results: list[SearchResult] = []
    for text in queries:
        try:
            result = engine.search(text, k=k)
        except QueryError as error:
            if len(queries) == 1:
                raise
            print(json.dumps({"query": text[:80], "blocked": False, "message": str(error),
                              "results": [], "withheld": 0, "error": True},
                             ensure_ascii=False), flush=True)
            continue
        results.append(result)
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
        else:
            print_result(result)
    engine.close()
    if args.html is not None:
        from engine.contact_sheet import write_contact_sheet

        write_contact_sheet(args.html, results, title=f"Search results · {encoder.name}")
        print(f"contact sheet: {args.html}", file=sys.stderr)
    return 0


def _reranker(args: argparse.Namespace, settings: EngineSettings, encoder_name: str
              ) -> Reranker | None:
    """The optional re-ranker: --rerank, else the ENGINE_RERANK setting, else none."""
    path = args.rerank or settings.rerank
    if path is None:
        return None
    from engine.rerank import RerankerError, load_reranker

    depth = args.rerank_depth if args.rerank_depth is not None else settings.rerank_depth
    if depth is not None and depth < 1:
        raise UsageError("--rerank-depth must be at least 1")
    try:
        reranker = load_reranker(path, depth)
        reranker.check_encoder(encoder_name)
        return reranker
    except RerankerError as error:
        raise UsageError(str(error)) from error


def print_result(result: SearchResult) -> None:
    """Human-readable ranking for the terminal."""
    print(f"\n“{result.query}”  ({result.language}, {result.elapsed_ms:.0f} ms)")
    if result.blocked:
        print(f"  ⛔ {result.message}")
        return
    if not result.hits:
        print("  nothing found")
    for rank, hit in enumerate(result.hits, start=1):
        print(f"  {rank:>2}. {hit.score:6.3f}  {hit.photo}")
    if result.withheld:
        print(f"  {result.withheld} photo(s) withheld: {result.message or _disclaimer(result)}")


def _disclaimer(result: SearchResult) -> str:
    from engine.legal import disclaimer

    return disclaimer(result.language)


def _child_filter(settings: EngineSettings, encoder: Encoder) -> ChildFilter:
    return child_filter_from_settings(settings, encoder.name, lambda: encoder)


def _index_filter(args: argparse.Namespace, settings: EngineSettings, index: PhotoIndex
                  ) -> ChildFilter:
    """The configured child filter for an open index; the model is loaded only when the
    zero-shot fallback needs its text side."""
    spec = _model_spec(args, settings, args.index_dir)

    def encoder() -> Encoder:
        loaded = load_encoder(spec)
        index.require_model(loaded.name)
        return loaded

    return child_filter_from_settings(settings, index.model, encoder)


def run_reflag(args: argparse.Namespace, settings: EngineSettings) -> int:
    """Re-score every photo from its stored embedding under the configured detector."""
    if not args.index_dir.is_dir():
        raise UsageError(f"index directory does not exist: {args.index_dir}")
    index = PhotoIndex.open(args.index_dir)
    child_filter = _index_filter(args, settings, index)
    report = reflag_index(args.index_dir, child_filter)
    before = "unknown" if report.flagged_before is None else str(report.flagged_before)
    state = "re-flagged" if report.written else "already flagged by this filter"
    print(f"index {args.index_dir}: {state}: {report.flagged} of {report.total} photos flagged "
          f"by {child_filter.version} (before: {before}; {report.newly_flagged} newly "
          f"flagged, {report.unflagged} no longer flagged)")
    return 0


def run_review(args: argparse.Namespace, settings: EngineSettings) -> int:
    """Write the review page of photos hidden by the detector alone, least certain first."""
    from engine.contact_sheet import render_review_sheet  # thumbnails: PIL, only here

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    index = PhotoIndex.open(args.index_dir)
    child_filter = _index_filter(args, settings, index)
    if not child_filter.enabled:
        raise UsageError("the child filter is off (ENGINE_CHILD_FILTER=off): nothing is "
                         "hidden by a detector, so there is nothing to review")
    scores = index.child_scores(child_filter)
    queue = review_queue(scores, child_filter.flags(scores), index.paths, index.signatures(),
                         read_overrides(args.index_dir))
    shown = queue.pending[:args.limit]
    summary = (f"{len(queue.pending)} of {len(index)} photos are hidden by "
               f"{child_filter.version} and await review ({queue.flagged} flagged; moderators "
               f"allowed {queue.allowed} and blocked {queue.blocked} of them). This page shows "
               f"{len(shown)}.")
    try:
        args.review.parent.mkdir(parents=True, exist_ok=True)
        args.review.write_text(render_review_sheet(shown, index.photo_dir, args.index_dir,
                                                   summary), encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot write the review page {args.review}: {error}") from None
    print(summary)
    print(f"Review page: {args.review}")
    return 0


def _photo_key(photo: str, index: PhotoIndex | None) -> str:
    """A photo as the index names it: relative to the photo folder (absolute paths inside
    the folder are accepted too)."""
    path = Path(photo)
    if path.is_absolute() and index is not None:
        try:
            return path.resolve().relative_to(index.photo_dir).as_posix()
        except ValueError:
            raise UsageError(f"{photo} is not inside the indexed folder {index.photo_dir}"
                             ) from None
    return normalize_photo(photo)


def run_moderate(args: argparse.Namespace, settings: EngineSettings) -> int:
    """Record overrides in INDEX_DIR/moderation.csv (they outlive re-indexing)."""
    root: Path = args.index_dir
    if not root.is_dir():
        raise UsageError(f"index directory does not exist: {root}")
    if args.review is not None:
        return run_review(args, settings)
    if args.list:
        for item in read_overrides(root).items:
            note = f"  # {item.note}" if item.note else ""
            print(f"{item.decision:<6} {item.photo}  ({item.updated}){note}")
        return 0
    try:
        index: PhotoIndex | None = PhotoIndex.open(root)
    except IndexError_:
        index = None
    signatures = index.signatures() if index is not None else {}
    decision: Decision | None = "allow" if args.allow else "block" if args.block else None
    photos = [_photo_key(p, index) for p in (args.allow or args.block or args.clear)]
    if decision == "allow":
        missing = [p for p in photos if p not in signatures]
        if missing:
            raise UsageError(f"not in the index: {', '.join(missing)} (an allow is bound to "
                             "the file as indexed: index the photo first)")
    for photo in photos:
        set_decision(root, photo, decision, signature=signatures.get(photo), note=args.note)
        if decision == "block":
            known = "" if photo in signatures else " (not in the index yet)"
            print(f"blocked {photo}{known}: never shown")
        elif decision == "allow":
            print(f"allowed {photo}: shown even when flagged, until the file changes")
        else:
            print(f"cleared {photo}: the detector decides")
    return 0
