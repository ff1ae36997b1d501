"""🚫 presses: a user reports that a shown photo shows a child.

The detector learns "child" from caption words and misses some; the first user who sees such
a photo takes it out of every result at once. A report blocks the photo in the engine's
moderation file (block > allow > detector flag; every running search engine re-reads the file
when it changes), records who reported what in the log, and tells the admins. It takes effect
without waiting for an admin on purpose: hiding an adult by mistake costs a photo, showing a
child breaks the law. An admin lifts a wrong block with `python -m engine moderate --clear`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy.orm import Session
from telegram import Update
from telegram.error import TelegramError

from bot.callbacks import ReportButton
from bot.handlers.common import CallbackAnswer, pressed, require_callback
from bot.i18n import normalize_language, text
from bot.services import BotContext
from bot.storage import (
    NotQueryOwnerError,
    ReportResult,
    UnknownShownPhotoError,
    get_chosen_language,
    report_photo,
)
from engine.moderation import decided, read_overrides, set_decision

log = logging.getLogger(__name__)


def block_reported(index_root: Path, photo: str, note: str) -> bool:
    """Block `photo` unless a block already names it (the first report's note is kept);
    True when this call wrote the block. Blocking file I/O: run it in a thread."""
    if decided(read_overrides(index_root).decisions().get(photo, []), None) == "block":
        return False
    set_decision(index_root, photo, "block", signature=None, note=note)
    return True


async def on_report(update: Update, context: BotContext) -> None:
    query, user = require_callback(update)
    answer = CallbackAnswer(query)
    services = context.services
    language = services.language_of(user)
    try:
        button = await pressed(services, query, user, answer, language, ReportButton)
        if button is None:
            return

        def store(session: Session) -> ReportResult:
            return report_photo(session, user_id=user.id, query_id=button.query_id,
                                rank=button.rank)

        try:
            stored = await services.in_transaction(store)
        except NotQueryOwnerError:
            log.warning("user %s reported a photo of another user's query %d", user.id,
                        button.query_id)
            await answer(text(language, "button_not_yours"), alert=True)
            return
        except UnknownShownPhotoError:
            await answer(text(language, "button_expired"), alert=True)
            return
        note = (f"reported in the bot by user {user.id} (query {button.query_id}, "
                f"photo {button.rank})")
        blocked = await asyncio.to_thread(block_reported, services.engine.index.root,
                                          stored.photo, note)
        log.warning("user %s reported %s as showing a child (query %d, rank %d): %s",
                    user.id, stored.photo, button.query_id, button.rank,
                    "blocked" if blocked else "already blocked")
        key = "report_done" if blocked else "report_already"
        await answer(text(language, key, rank=button.rank), alert=True)
        if blocked:
            await _tell_admins(context, stored.photo, button)
    finally:
        await answer()


async def _tell_admins(context: BotContext, photo: str, button: ReportButton) -> None:
    """Best effort: an admin who never started the bot cannot be messaged, and the block
    holds whether or not anybody was told."""
    services = context.services
    for admin_id in sorted(services.settings.admin_ids):
        def chosen(session: Session, admin: int = admin_id) -> str | None:
            return get_chosen_language(session, admin)

        language = normalize_language(await services.read(chosen))
        try:
            await context.bot.send_message(
                admin_id, text(language, "report_admin", photo=photo,
                               query_id=button.query_id, rank=button.rank))
        except TelegramError as exc:
            log.warning("could not tell admin %s about a report: %s", admin_id, exc)

