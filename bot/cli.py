"""`python -m bot`: the bot's command line.

    python -m bot [run] [-v]          run the bot (the default when no command is given)
    python -m bot export {queries,feedback,labels} [--since DATE] [--until DATE]
                         [--format csv|jsonl|parquet] [--with-user-ids] -o FILE
    python -m bot migrate [--check]

Errors a user can cause (a malformed date, an unknown table, an unwritable path, a database
that is not migrated or not reachable, a bad setting) print one line on stderr and exit 2;
nothing in the database changes. Settings come from the environment / `.env` (BotSettings).
Running without a subcommand runs the bot (bot.run: exit 0 when stopped by SIGTERM/SIGINT,
2 with one line when a setting such as TELEGRAM_BOT_TOKEN is missing).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from bot.exporting.dates import DateArgumentError, parse_window
from bot.exporting.pseudonym import KeyFileError, Pseudonymiser, load_or_create_key
from bot.exporting.run import ExportError, ExportRequest, infer_format, open_output, write_export
from bot.exporting.writers import FORMATS
from bot.settings import BotSettings
from bot.storage.database import DatabaseConfigError, make_engine, safe_url
from bot.storage.exports import EXPORT_TABLES
from bot.storage.migrate import MigrationError, migration_status, upgrade_to_head

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_CURRENT = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line instead of usage + message + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bot", description="Reference-photo search bot.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser(
        "run",
        help="run the bot (default)",
        description=(
            "Run the bot with long polling (a webhook when WEBHOOK_URL is set) until SIGTERM "
            "or SIGINT. Settings come from the environment / .env."
        ),
    )

    export = commands.add_parser(
        "export",
        help="export queries, feedback or training labels",
        description=(
            "Stream a table to a file. User ids are replaced by a keyed hash unless "
            "--with-user-ids. Dates are UTC: YYYY-MM-DD (whole days, --until inclusive) or "
            "YYYY-MM-DDTHH:MM[:SS][+HH:MM] (--until exclusive)."
        ),
    )
    export.add_argument("table", choices=EXPORT_TABLES)
    export.add_argument("--since", metavar="DATE", help="from this date (inclusive)")
    export.add_argument("--until", metavar="DATE", help="up to this date (inclusive day)")
    export.add_argument("--format", choices=FORMATS, help="default: from the file suffix, else csv")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="'-' for stdout")
    export.add_argument(
        "--with-user-ids",
        action="store_true",
        help="export real Telegram user ids and usernames (handle as personal data)",
    )

    migrate = commands.add_parser(
        "migrate",
        help="bring the database to the current schema",
        description="Upgrade DATABASE_URL to the newest migration (the bot also does so at start).",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="only report; exit 1 when the database is not at the current schema",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command in (None, "run"):
        from bot.run import main as run_bot

        return run_bot(verbose=args.verbose)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "export":
            return _export(args)
        if args.command == "migrate":
            return _migrate(args)
    except (
        UsageError,
        DateArgumentError,
        ExportError,
        KeyFileError,
        MigrationError,
        DatabaseConfigError,
    ) as exc:
        return _fail(str(exc))
    raise AssertionError(f"unhandled command {args.command!r}")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _settings() -> BotSettings:
    try:
        return BotSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]).upper()
        raise UsageError(f"invalid setting {where}: {first['msg']}") from None


def _database_error(settings: BotSettings, exc: SQLAlchemyError) -> UsageError:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    return UsageError(f"cannot use the database {safe_url(settings.database_url)}: {reason}")


def _export(args: argparse.Namespace) -> int:
    since, until = parse_window(args.since, args.until)
    fmt = infer_format(args.output, args.format)
    settings = _settings()
    destination = open_output(args.output, fmt)
    try:
        try:
            status = migration_status(settings.database_url)
        except SQLAlchemyError as exc:
            raise _database_error(settings, exc) from None
        if not status.up_to_date:
            raise UsageError(
                f"the database {safe_url(settings.database_url)} is {status.describe()}"
            )
        pseudonymiser = None
        if not args.with_user_ids:
            key = (
                settings.export_hash_key.get_secret_value().encode()
                if settings.export_hash_key is not None
                else load_or_create_key(settings.export_key_path)
            )
            pseudonymiser = Pseudonymiser(key)
        request = ExportRequest(
            table=args.table,
            output=args.output,
            fmt=fmt,
            since=since,
            until=until,
            with_user_ids=args.with_user_ids,
        )
        engine = make_engine(settings.database_url)
        try:
            rows = write_export(engine, request, destination, pseudonymiser)
        finally:
            engine.dispose()
    except BaseException:
        destination.discard()
        raise
    where = "standard output" if args.output == "-" else args.output
    print(f"exported {rows} {args.table} rows to {where} ({fmt})", file=sys.stderr)
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    url = settings.database_url
    try:
        if args.check:
            status = migration_status(url)
            print(f"{safe_url(url)}: {status.describe()}")
            return EXIT_OK if status.up_to_date else EXIT_NOT_CURRENT
        before = migration_status(url).current
        after = upgrade_to_head(url)
    except SQLAlchemyError as exc:
        raise _database_error(settings, exc) from None
    if before == after.current:
        print(f"{safe_url(url)}: already at {after.current} (head)")
    else:
        print(f"{safe_url(url)}: migrated from {before or 'empty'} to {after.current} (head)")
    return EXIT_OK
