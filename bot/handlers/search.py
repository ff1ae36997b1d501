"""Searches: a text message, a photo, or "More ▶" on earlier results.

Each handler is parse → engine (thread) → storage (thread, one transaction) → render/send.
The query and the photos shown for it are logged *before* anything is sent: the vote buttons
carry the logged query's id, and a crash after logging loses a reply, never a record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.orm import Session
from telegram import Update
from telegram.error import BadRequest

from bot.callbacks import MoreButton
from bot.handlers.common import (
    CallbackAnswer,
    pressed,
    require_callback,
    require_message,
    take_turn,
    telegram_user,
)
from bot.i18n import Language, text
from bot.photos import PagePhoto, ReadyPhoto, prepare_photos, send_album
from bot.rendering import (
    ResultPhoto,
    pick_photo_size,
    query_problem,
    results_header,
    split_albums,
    vote_keyboard,
    withheld_notice,
)
from bot.services import BotContext, BotServices
from bot.storage import (
    LoggedQuery,
    QueryInfo,
    Shown,
    TelegramUser,
    append_shown_photos,
    get_query,
    get_shown_photos,
    get_votes,
    log_query,
)
from engine.images import UnreadablePhotoError
from engine.legal import disclaimer
from engine.search import Hit, QueryError, SearchResult

log = logging.getLogger(__name__)

# Telegram lets bots download files up to 20 MB.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024


# ----------------------------------------------------------------------------- text query


async def on_text_query(update: Update, context: BotContext) -> None:
    """A text message is a description of the photo wanted."""
    message, user = require_message(update)
    services = context.services
    language = services.language_of(user)
    raw = message.text or ""
    problem = query_problem(raw, language)
    if problem is not None:
        await message.reply_text(problem)
        return
    if not await take_turn(context, user, message, language):
        return
    k = services.results_per_page
    try:
        result = await services.search(lambda engine: engine.search(raw, k=k))
    except QueryError:  # the engine's own limits; query_problem mirrors them
        await message.reply_text(text(language, "empty_query"))
        return
    await _answer_search(context, update, result, kind="text", query_text=result.query,
                         language=language, label=result.query)


# ---------------------------------------------------------------------------- photo query


async def on_photo_query(update: Update, context: BotContext) -> None:
    """A photo is a query too: find photos that look like it."""
    message, user = require_message(update)
    services = context.services
    language = services.language_of(user)
    size = pick_photo_size(message.photo)
    if size.file_size is not None and size.file_size > MAX_DOWNLOAD_BYTES:
        await message.reply_text(text(language, "photo_too_big"))
        return
    if not await take_turn(context, user, message, language):
        return
    data = await _download(context, size.file_id)
    k = services.results_per_page
    try:
        result = await services.search(
            lambda engine: engine.search_by_photo(data, k=k, language=language)
        )
    except UnreadablePhotoError as exc:
        log.info("user %s sent an unreadable photo: %s", user.id, exc)
        await message.reply_text(text(language, "photo_unreadable"))
        return
    await _answer_search(context, update, result, kind="photo", query_text=size.file_id,
                         language=language, label=text(language, "photo_query_label"))


async def _download(context: BotContext, file_id: str) -> bytes:
    telegram_file = await context.bot.get_file(file_id)
    return bytes(await telegram_file.download_as_bytearray())


# ----------------------------------------------------------------------- shared answering


async def _answer_search(
    context: BotContext,
    update: Update,
    result: SearchResult,
    *,
    kind: str,
    query_text: str,
    language: Language,
    label: str,
) -> None:
    """Log the search, then send the disclaimer, "nothing found", or the results."""
    message, user = require_message(update)
    services = context.services
    who = telegram_user(user)
    chat_id = message.chat_id
    if result.blocked:
        await services.in_transaction(
            lambda session: _log(session, who, chat_id, result, kind, query_text, ())
        )
        log.info("user %s: query refused (%s)", user.id, result.reason)
        await message.reply_text(disclaimer(language))
        return
    photos = [
        PagePhoto(rank=rank, photo=hit.photo, path=hit.path, score=hit.score)
        for rank, hit in enumerate(result.hits, start=1)
    ]
    ready = _renumber(
        await asyncio.to_thread(prepare_photos, services, context.bot.id, photos), first_rank=1
    )
    logged: LoggedQuery = await services.in_transaction(
        lambda session: _log(session, who, chat_id, result, kind, query_text, ready)
    )
    log.info("user %s: %s query %d, %d photos (%d withheld) in %.0f ms",
             user.id, kind, logged.id, len(ready), result.withheld, result.elapsed_ms)
    notice = withheld_notice(language, result.withheld)
    if not ready:
        key = "nothing_found" if kind == "text" else "photo_nothing_found"
        await message.reply_text(notice or text(language, key))
        return
    full_page = len(result.hits) >= services.results_per_page
    next_rank = _next_rank(services, ready[-1].rank) if full_page else None
    await show_page(context, chat_id=chat_id, user_id=user.id, query_id=logged.id, ready=ready,
                    label=label, language=language, next_rank=next_rank)
    if notice is not None:
        await context.bot.send_message(chat_id, notice)


def _log(
    session: Session,
    who: TelegramUser,
    chat_id: int,
    result: SearchResult,
    kind: str,
    query_text: str,
    ready: Sequence[ReadyPhoto],
) -> LoggedQuery:
    return log_query(
        session,
        user=who,
        chat_id=chat_id,
        text=query_text,
        kind=kind,
        language=result.language,
        model_version=result.model,
        latency_ms=result.elapsed_ms,
        hits=[(item.photo, item.score) for item in ready],
        refused=result.blocked,
        refusal_reason=result.reason if result.blocked else None,
        withheld=None if result.blocked else result.withheld,
        filter_version=result.filter_version or result.legal_version or None,
    )


def _renumber(ready: Sequence[ReadyPhoto], first_rank: int) -> list[ReadyPhoto]:
    """Consecutive ranks again after unreadable photos were left out."""
    return [replace(item, rank=first_rank + i) for i, item in enumerate(ready)]


def _next_rank(services: BotServices, last_rank: int) -> int | None:
    """The rank "More ▶" would start at, or None when the collection has nothing further."""
    return last_rank + 1 if last_rank < len(services.engine.index) else None


async def show_page(
    context: BotContext,
    *,
    chat_id: int,
    user_id: int,
    query_id: int,
    ready: Sequence[ReadyPhoto],
    label: str,
    language: Language,
    next_rank: int | None,
) -> None:
    """Send a page of results: per album (≤ 10 photos) the photos, then their vote buttons.

    Albums cannot carry buttons, so a message follows each album; "More ▶" goes under the
    last one only.
    """
    services = context.services
    groups = split_albums(list(ready))
    for number, group in enumerate(groups):
        await send_album(context.bot, services, chat_id, group)
        keyboard = vote_keyboard(
            services.codec,
            user_id=user_id,
            query_id=query_id,
            photos=[ResultPhoto(item.rank, item.photo) for item in group],
            votes={},
            next_rank=next_rank if number == len(groups) - 1 else None,
            language=language,
        )
        header = results_header(language, label, group[0].rank, group[-1].rank)
        await context.bot.send_message(chat_id, header, reply_markup=keyboard)


# ----------------------------------------------------------------------------------- more


async def on_more(update: Update, context: BotContext) -> None:
    """"More ▶": the next page of a query's results, appended to its log."""
    query, user = require_callback(update)
    answer = CallbackAnswer(query)
    services = context.services
    language = services.language_of(user)
    try:
        button = await pressed(services, query, user, answer, language, MoreButton)
        if button is None:
            return
        decision = services.throttle.reserve(user.id)
        if not decision.accepted:
            await answer(text(language, "too_many_queued"), alert=True)
            return
        await answer()
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        async with services.paging_lock(button.query_id):
            await _page(context, update, button, language)
    finally:
        await answer()


async def _page(
    context: BotContext, update: Update, button: MoreButton, language: Language
) -> None:
    query, user = require_callback(update)
    services = context.services
    chat_id = query.message.chat.id if query.message is not None else user.id

    def load(session: Session) -> tuple[QueryInfo, tuple[Shown, ...]]:
        return get_query(session, button.query_id), get_shown_photos(session, button.query_id)

    info, shown = await services.read(load)
    if info.user_id != user.id:  # signed for this user, so only with a leaked key
        log.warning("user %s paged query %d of user %s", user.id, info.id, info.user_id)
        return
    last_rank = shown[-1].rank if shown else 0
    if button.next_rank <= last_rank:
        # Pressed twice (or retried): that page is on screen already.
        await _drop_more_button(context, update, button, language)
        return
    k = len(shown) + services.results_per_page
    if info.kind == "photo":
        data = await _download(context, info.text)
        result = await services.search(
            lambda engine: engine.search_by_photo(data, k=k, language=language)
        )
    else:
        result = await services.search(lambda engine: engine.search(info.text, k=k))
    if result.blocked:  # the legal lexicon grew since the query was answered
        await context.bot.send_message(chat_id, disclaimer(language))
        await _drop_more_button(context, update, button, language)
        return
    seen = {item.photo for item in shown}
    fresh = [hit for hit in result.hits if hit.photo not in seen][: services.results_per_page]
    notice = withheld_notice(
        language, page_withheld(result, seen, fresh, services.results_per_page))
    first_rank = last_rank + 1
    ready = _renumber(
        await asyncio.to_thread(
            prepare_photos, services, context.bot.id, _page_photos(fresh, first_rank)
        ),
        first_rank,
    )
    await _drop_more_button(context, update, button, language)
    if not ready:
        await context.bot.send_message(chat_id, text(language, "no_more_results"))
        if notice is not None:
            await context.bot.send_message(chat_id, notice)
        return

    def append(session: Session) -> tuple[Shown, ...]:
        return append_shown_photos(
            session,
            query_id=info.id,
            user_id=user.id,
            hits=[(item.photo, item.score) for item in ready],
            start_rank=first_rank,
        )

    await services.in_transaction(append)
    log.info("user %s: query %d paged to ranks %d-%d", user.id, info.id, first_rank,
             ready[-1].rank)
    full_page = len(fresh) >= services.results_per_page
    next_rank = _next_rank(services, ready[-1].rank) if full_page else None
    label = info.text if info.kind == "text" else text(language, "photo_query_label")
    await show_page(context, chat_id=chat_id, user_id=user.id, query_id=info.id, ready=ready,
                    label=label, language=language, next_rank=next_rank)
    if notice is not None:
        await context.bot.send_message(chat_id, notice)


def page_withheld(result: SearchResult, seen: set[str], fresh: Sequence[Hit],
                  page_size: int) -> int:
    """Photos withheld within one "More ▶" page: the excluded photos ranked above the page's
    last photo but not above the last photo already shown (earlier pages reported those).

    `Hit.withheld_above` counts the excluded photos ranked at or above each hit; a page that
    is not full (the allowed photos ran out) takes the engine's total, as the engine does.
    """
    before = max((hit.withheld_above for hit in result.hits if hit.photo in seen), default=0)
    upto = fresh[-1].withheld_above if len(fresh) >= page_size else result.withheld
    return max(0, upto - before)


def _page_photos(hits: Sequence[Hit], first_rank: int) -> list[PagePhoto]:
    return [
        PagePhoto(rank=rank, photo=hit.photo, path=hit.path, score=hit.score)
        for rank, hit in enumerate(hits, start=first_rank)
    ]


async def _drop_more_button(
    context: BotContext, update: Update, button: MoreButton, language: Language
) -> None:
    """Redraw the pressed keyboard without "More ▶" (the next page has its own)."""
    query, user = require_callback(update)
    services = context.services

    def load(session: Session) -> tuple[tuple[Shown, ...], dict[int, int]]:
        return (
            get_shown_photos(session, button.query_id),
            get_votes(session, user_id=user.id, query_id=button.query_id),
        )

    shown, votes = await services.read(load)
    page = [s for s in shown if button.page_start <= s.rank < button.next_rank]
    if not page:
        return
    keyboard = vote_keyboard(
        services.codec,
        user_id=user.id,
        query_id=button.query_id,
        photos=[ResultPhoto(s.rank, s.photo) for s in page],
        votes={s.rank: votes[s.id] for s in page if s.id in votes},
        next_rank=None,
        language=language,
    )
    try:
        await query.edit_message_reply_markup(reply_markup=keyboard)
    except BadRequest as exc:
        if "not modified" not in exc.message.lower():
            raise
