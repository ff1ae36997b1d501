"""The error handler: one log line with an incident id, and that id for the user.

The id lets an admin find the traceback from a user's screenshot without the user ever seeing
internals. Network trouble while polling (no update involved) is logged briefly: PTB retries
it by itself, and a traceback per blip would drown the log.
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from telegram import Update
from telegram.error import Forbidden, NetworkError, TelegramError

from bot.i18n import text
from bot.services import BotContext

log = logging.getLogger(__name__)


def new_incident_id() -> str:
    return secrets.token_hex(4)


async def on_error(update: object, context: BotContext) -> None:
    error = context.error
    if not isinstance(update, Update):
        if isinstance(error, NetworkError):
            log.warning("network error outside an update (retrying): %s", error)
        else:
            log.error("error outside an update", exc_info=error)
        return
    incident = new_incident_id()
    user = update.effective_user
    log.error(
        "incident %s: update %s from user %s failed: %s: %s",
        incident,
        update.update_id,
        user.id if user else "-",
        type(error).__name__,
        error,
        exc_info=error,
    )
    bot_data = context.bot_data
    language = (
        bot_data.services.language_of(user) if bot_data.services is not None else "en"
    )
    message = text(language, "error", incident=incident)
    if update.callback_query is not None:
        # Usually answered already by the handler's `finally`; the chat message follows.
        with contextlib.suppress(TelegramError):
            await update.callback_query.answer(message, show_alert=True)
    chat = update.effective_chat
    if chat is None:
        return
    try:
        await context.bot.send_message(chat.id, message)
    except Forbidden:
        log.info("incident %s: user blocked the bot; not told", incident)
    except TelegramError as exc:
        log.warning("incident %s: could not tell the user: %s", incident, exc)
