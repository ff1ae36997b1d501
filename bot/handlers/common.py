"""Small pieces several handlers share: answering callbacks once, pacing, user records."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from telegram import CallbackQuery, Message, Update, User
from telegram.error import BadRequest

from bot.callbacks import (
    CallbackDataError,
    ForgedCallbackError,
    MoreButton,
    ReportButton,
    VoteButton,
)
from bot.i18n import Language, text
from bot.services import BotContext, BotServices
from bot.storage import TelegramUser

PressedButton = TypeVar("PressedButton", VoteButton, MoreButton, ReportButton)
_BUTTON_NAMES: dict[type, str] = {VoteButton: "vote button", MoreButton: "'more' button",
                                  ReportButton: "report button"}

log = logging.getLogger(__name__)


class CallbackAnswer:
    """Answers a callback query exactly once.

    Telegram shows a spinner on the pressed button until the callback is answered, so every
    callback handler answers in a `finally` (with nothing, if it failed before choosing a
    text); answering twice would be an error, answering never leaves the client spinning.
    """

    def __init__(self, query: CallbackQuery) -> None:
        self.query = query
        self.done = False

    async def __call__(self, message: str | None = None, *, alert: bool = False) -> None:
        if self.done:
            return
        self.done = True
        try:
            await self.query.answer(message, show_alert=alert)
        except BadRequest as exc:  # too old or already answered: nothing more to do
            log.info("callback %s not answered: %s", self.query.id, exc.message)


def telegram_user(user: User) -> TelegramUser:
    """The parts of a Telegram user that storage keeps."""
    return TelegramUser(id=user.id, username=user.username, language=user.language_code)


def require_message(update: Update) -> tuple[Message, User]:
    """The message and its sender; handlers are only registered for updates that have both."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        raise RuntimeError(f"update {update.update_id} has no message or no sender")
    return message, user


async def pressed(services: BotServices, query: CallbackQuery, user: User,
                  answer: CallbackAnswer, language: Language,
                  kind: type[PressedButton]) -> PressedButton | None:
    """The `kind` button behind a press, or None once the user was told why it does nothing:
    another user's or an altered button (logged), an expired one, or one of another kind."""
    try:
        button = services.codec.decode(query.data or "", user_id=user.id)
    except ForgedCallbackError:
        log.warning("user %s pressed a %s that is not theirs", user.id, _BUTTON_NAMES[kind])
        await answer(text(language, "button_not_yours"), alert=True)
        return None
    except CallbackDataError:
        await answer(text(language, "button_expired"), alert=True)
        return None
    if not isinstance(button, kind):
        await answer(text(language, "button_expired"))
        return None
    return button


def require_callback(update: Update) -> tuple[CallbackQuery, User]:
    query = update.callback_query
    if query is None or query.data is None:
        raise RuntimeError(f"update {update.update_id} has no callback data")
    return query, query.from_user


async def take_turn(context: BotContext, user: User, message: Message, language: Language) -> bool:
    """Wait for the user's next search slot (one a second); False when they must retry.

    Tells the user once per burst that their queries are queued, and refuses politely when
    too many are already waiting.
    """
    decision = context.services.throttle.reserve(user.id)
    if not decision.accepted:
        log.info("user %s: search refused, too many queued", user.id)
        await message.reply_text(text(language, "too_many_queued"))
        return False
    if decision.notify:
        await message.reply_text(text(language, "slow_down"))
    if decision.delay > 0:
        await asyncio.sleep(decision.delay)
    return True
