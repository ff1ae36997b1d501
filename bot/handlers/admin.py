"""Admin commands: /stats, /export, /reindex — only for ADMIN_IDS.

Anyone else is told "not allowed" and the attempt is logged with the user id. The heavy work
(statistics queries, writing CSV, embedding photos) runs on worker threads; reads go through a
read-only snapshot (`storage.reader`) so an export never holds the write lock the bot needs.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session
from telegram import Message, Update, User
from telegram.error import BadRequest

from bot.exporting.pseudonym import Pseudonymiser, load_or_create_key
from bot.exporting.run import ExportRequest, open_output, write_export
from bot.handlers.commands import DEFAULT_ADMIN_DAYS
from bot.handlers.common import require_message
from bot.i18n import Language, text
from bot.rendering import format_stats, truncate
from bot.services import BotContext, BotServices
from bot.storage import EXPORT_TABLES, Stats, get_stats, reader
from bot.throttle import Pacer
from engine.index import IndexError_, PhotoIndex, UpdateReport, update_index
from engine.moderation import ModerationError
from engine.search import SearchEngine

log = logging.getLogger(__name__)

MAX_DAYS = 3650
DEFAULT_EXPORT_TABLES = ("queries", "feedback")
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # Telegram's limit for documents sent by bots
PROGRESS_EDIT_SECONDS = 3.0  # at most one progress edit this often (Telegram rate limits)


@dataclass(frozen=True)
class AdminArgs:
    days: int
    tables: tuple[str, ...]


class ArgumentProblem(ValueError):
    """An admin typed arguments we cannot use; `key`/`values` pick the message."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def parse_admin_args(args: list[str], command: str, *, tables: bool) -> AdminArgs:
    """`[days] [table]` in any order: days 1–3650 (default 30), tables for /export."""
    days = DEFAULT_ADMIN_DAYS
    chosen: tuple[str, ...] = DEFAULT_EXPORT_TABLES if tables else ()
    for arg in args:
        word = arg.strip().lower()
        if word.isdigit():
            days = int(word)
            if not 1 <= days <= MAX_DAYS:
                raise ArgumentProblem("bad_days", max=MAX_DAYS, command=command)
        elif tables and word in EXPORT_TABLES:
            chosen = (word,)
        elif tables and not word.lstrip("-").isdigit():
            raise ArgumentProblem("bad_table", table=truncate(arg, 40))
        else:
            raise ArgumentProblem("bad_days", max=MAX_DAYS, command=command)
    return AdminArgs(days=days, tables=chosen)


async def _admin_only(update: Update, context: BotContext, command: str) -> bool:
    message, user = require_message(update)
    services = context.services
    if services.is_admin(user):
        return True
    log.warning("user %s (@%s) tried admin command /%s: not allowed", user.id,
                user.username or "-", command)
    await message.reply_text(text(services.language_of(user), "not_allowed"))
    return False


async def _parse(
    update: Update, context: BotContext, command: str, *, tables: bool
) -> AdminArgs | None:
    message, user = require_message(update)
    try:
        return parse_admin_args(list(context.args or []), command, tables=tables)
    except ArgumentProblem as problem:
        language = context.services.language_of(user)
        await message.reply_text(text(language, problem.key, **problem.values))
        return None


def _since(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


# ----------------------------------------------------------------------------------- stats


async def on_stats(update: Update, context: BotContext) -> None:
    if not await _admin_only(update, context, "stats"):
        return
    args = await _parse(update, context, "stats", tables=False)
    if args is None:
        return
    message, user = require_message(update)
    services = context.services

    def compute() -> Stats:
        with Session(reader(services.database)) as session:
            try:
                return get_stats(session, since=_since(args.days))
            finally:
                session.rollback()

    stats = await asyncio.to_thread(compute)
    await message.reply_text(format_stats(stats, services.language_of(user), args.days))


# ---------------------------------------------------------------------------------- export


async def on_export(update: Update, context: BotContext) -> None:
    """The log as CSV documents (queries and feedback by default), user ids pseudonymised."""
    if not await _admin_only(update, context, "export"):
        return
    args = await _parse(update, context, "export", tables=True)
    if args is None:
        return
    message, user = require_message(update)
    services = context.services
    language = services.language_of(user)
    log.info("admin %s: export %s of the last %d days", user.id, ",".join(args.tables), args.days)
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        for table in args.tables:
            path = Path(tmp) / f"{table}-{datetime.now(UTC):%Y%m%d-%H%M%S}.csv"
            rows = await asyncio.to_thread(_write_csv, services, table, args.days, path)
            size = path.stat().st_size
            if size > MAX_UPLOAD_BYTES:
                await message.reply_text(
                    text(language, "export_too_big", table=table, size=size // (1024 * 1024))
                )
                continue
            caption = text(language, "export_caption", table=table, rows=rows, days=args.days)
            with open(path, "rb") as handle:
                await message.reply_document(handle, filename=path.name, caption=caption)


def _write_csv(services: BotServices, table: str, days: int, path: Path) -> int:
    settings = services.settings
    key = (
        settings.export_hash_key.get_secret_value().encode()
        if settings.export_hash_key is not None
        else load_or_create_key(settings.export_key_path)
    )
    request = ExportRequest(table=table, output=str(path), fmt="csv", since=_since(days))
    return write_export(services.database, request, open_output(str(path), "csv"),
                        Pseudonymiser(key))


# --------------------------------------------------------------------------------- reindex


async def on_reindex(update: Update, context: BotContext) -> None:
    """Update the index from PHOTOS_DIR, editing one progress message, then swap it in."""
    if not await _admin_only(update, context, "reindex"):
        return
    message, user = require_message(update)
    services = context.services
    language = services.language_of(user)
    settings = services.settings
    if settings.photos_dir is None or settings.index_dir is None:
        await message.reply_text(text(language, "reindex_unavailable"))
        return
    if services.reindex_lock.locked():
        await message.reply_text(text(language, "reindex_running"))
        return
    async with services.reindex_lock:
        status = await message.reply_text(
            text(language, "reindex_start", folder=settings.photos_dir.name or "/")
        )
        await _reindex(context, user, status, language, settings.photos_dir, settings.index_dir)


async def _reindex(
    context: BotContext,
    user: User,
    status: Message,
    language: Language,
    photos_dir: Path,
    index_dir: Path,
) -> None:
    services = context.services
    # The latest (done, total), written by the worker thread and read by this coroutine;
    # replacing one list item is atomic, and only the newest value matters.
    progress: list[tuple[int, int] | None] = [None]

    def on_progress(done: int, total: int) -> None:
        progress[0] = (done, total)

    encoder = services.engine.encoder
    child_filter = services.engine.child_filter

    def work() -> UpdateReport:
        return update_index(photos_dir, index_dir, encoder, model_spec=services.model_spec,
                            progress=False, on_progress=on_progress, child_filter=child_filter)

    started = time.monotonic()
    task = asyncio.ensure_future(asyncio.to_thread(work))
    pacer = Pacer(PROGRESS_EDIT_SECONDS)
    shown: tuple[int, int] | None = None
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        latest = progress[0]
        if latest is not None and latest != shown and not task.done() and pacer.ready():
            shown = latest
            await _edit(status, text(language, "reindex_progress", done=latest[0],
                                     total=latest[1]))
    try:
        report = task.result()
        index = await asyncio.to_thread(PhotoIndex.open, index_dir)
        # The previous engine is not closed here: a search may still be running on it; its
        # backend is released when the last reference goes.
        previous = services.engine
        services.engine = await asyncio.to_thread(
            SearchEngine, encoder, index, previous.legal, child_filter,
            backend=previous.backend_factory)
    except (IndexError_, ModerationError, OSError) as exc:
        log.warning("admin %s: reindex failed: %s", user.id, exc)
        await _edit(status, text(language, "reindex_failed", error=truncate(str(exc), 300)))
        return
    log.info("admin %s: reindex done in %.1f s: %d photos (%d added, %d updated, %d removed)",
             user.id, time.monotonic() - started, report.total, report.added, report.updated,
             report.removed)
    await _edit(
        status,
        text(language, "reindex_done", total=report.total, added=report.added,
             updated=report.updated, removed=report.removed, unchanged=report.unchanged,
             skipped=len(report.skipped)),
    )


async def _edit(status: Message, new_text: str) -> None:
    try:
        await status.edit_text(new_text)
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
