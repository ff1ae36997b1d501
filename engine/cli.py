"""`python -m engine`: build or update an index, search it, write contact sheets.

Exit codes: 0 success (also when some photos were skipped), 2 a problem the user can fix
(missing folder, empty or too long query, wrong model), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.encoders import DEFAULT_MODEL_SPEC, ModelSpecError, load_encoder
from engine.index import IndexError_, PhotoIndex, update_index
from engine.search import QueryError, SearchEngine, SearchResult, validate_query
from engine.settings import EngineSettings

log = logging.getLogger("engine")


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

    search = sub.add_parser("search", help="search an index with a text query")
    search.add_argument("text", nargs="?", help="the query (or use --queries FILE)")
    search.add_argument("--index", type=Path, required=True, dest="index_dir")
    search.add_argument("-k", type=int, help="number of results (default 10)")
    search.add_argument("--json", action="store_true", help="print one JSON object per query")
    search.add_argument("--queries", type=Path, help="file with one query per line")
    search.add_argument("--html", type=Path, help="write a contact sheet of the results")
    search.add_argument("--model", help="model spec (default: the index's model)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = EngineSettings()
    try:
        if args.command == "index":
            return run_index(args, settings)
        return run_search(args, settings)
    except (UsageError, IndexError_, ModelSpecError, QueryError) as error:
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
    report = update_index(photo_dir, args.index_dir, encoder, model_spec=spec,
                          batch_size=args.batch_size or settings.batch_size,
                          workers=args.workers or settings.workers, progress=not args.quiet)
    print(f"index {args.index_dir}: {report.total} photos ({report.added} added, "
          f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged)"
          f" with {encoder.name}")
    if report.embedded:
        print(f"embedded {report.embedded} photos in {report.embed_seconds:.1f} s "
              f"({report.photos_per_second:.1f} photos/s)")
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
    encoder = load_encoder(_model_spec(args, settings, args.index_dir))
    engine = SearchEngine(encoder, index, LegalFilter.default(settings.legal_extra_lexicons))
    results: list[SearchResult] = []
    for text in queries:
        try:
            result = engine.search(text, k=k)
        except QueryError as error:
            if len(queries) == 1:
                raise
            print(json.dumps({"query": text[:80], "blocked": False, "message": str(error),
                              "results": [], "error": True}, ensure_ascii=False), flush=True)
            continue
        results.append(result)
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False), flush=True)
        else:
            print_result(result)
    if args.html is not None:
        from engine.contact_sheet import write_contact_sheet

        write_contact_sheet(args.html, results, title=f"Search results · {encoder.name}")
        print(f"contact sheet: {args.html}", file=sys.stderr)
    return 0


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
