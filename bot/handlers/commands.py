"""/start, /help, /language, and everything that is not a query: short, helpful answers."""

from __future__ import annotations

import logging

from telegram import Message, Update, User

from bot.callbacks import CallbackDataError, LanguageButton
from bot.handlers.common import (
    CallbackAnswer,
    require_callback,
    require_message,
    telegram_user,
)
from bot.i18n import Language, parse_language, text
from bot.rendering import language_keyboard
from bot.services import BotContext

log = logging.getLogger(__name__)

DEFAULT_ADMIN_DAYS = 30


async def on_start(update: Update, context: BotContext) -> None:
    message, user = require_message(update)
    language = context.services.language_of(user)
    await message.reply_text(text(language, "start", name=user.first_name or user.username or ""))


async def on_help(update: Update, context: BotContext) -> None:
    message, user = require_message(update)
    services = context.services
    language = services.language_of(user)
    reply = text(language, "help")
    if services.is_admin(user):
        reply += "\n\n" + text(language, "help_admin", days=DEFAULT_ADMIN_DAYS)
    await message.reply_text(reply)


async def on_language(update: Update, context: BotContext) -> None:
    """`/language ru` switches at once; `/language` alone offers buttons."""
    message, user = require_message(update)
    services = context.services
    if context.args:
        chosen = parse_language(" ".join(context.args))
        if chosen is None:
            await message.reply_text(text(services.language_of(user), "language_unknown"))
            return
        await _remember(context, user, chosen)
        await message.reply_text(text(chosen, "language_set"))
        return
    await message.reply_text(
        text(services.language_of(user), "language_prompt"),
        reply_markup=language_keyboard(services.codec, user_id=user.id),
    )


async def on_language_button(update: Update, context: BotContext) -> None:
    query, user = require_callback(update)
    answer = CallbackAnswer(query)
    try:
        try:
            button = context.services.codec.decode(query.data or "", user_id=user.id)
        except CallbackDataError:
            button = None
        if not isinstance(button, LanguageButton):
            await answer(text(context.services.language_of(user), "button_expired"))
            return
        await _remember(context, user, button.language)
        await answer(text(button.language, "language_set"))
        if isinstance(query.message, Message):
            await query.edit_message_text(text(button.language, "language_set"))
    finally:
        await answer()


async def _remember(context: BotContext, user: User, language: Language) -> None:
    await context.services.choose_language(telegram_user(user), language)
    log.info("user %s: language set to %s", user.id, language)


async def on_unknown_command(update: Update, context: BotContext) -> None:
    message, user = require_message(update)
    await message.reply_text(text(context.services.language_of(user), "unknown_command"))


async def on_sticker(update: Update, context: BotContext) -> None:
    await _reply(update, context, "sticker")


async def on_voice(update: Update, context: BotContext) -> None:
    await _reply(update, context, "voice")


async def on_document(update: Update, context: BotContext) -> None:
    await _reply(update, context, "document")


async def on_video(update: Update, context: BotContext) -> None:
    await _reply(update, context, "video")


async def on_other(update: Update, context: BotContext) -> None:
    await _reply(update, context, "other")


async def on_edited(update: Update, context: BotContext) -> None:
    await _reply(update, context, "edited")


async def on_stale_button(update: Update, context: BotContext) -> None:
    """A button whose data no handler recognises (from an older version of the bot)."""
    query, user = require_callback(update)
    await CallbackAnswer(query)(text(context.services.language_of(user), "button_expired"))


async def _reply(update: Update, context: BotContext, key: str) -> None:
    message, user = require_message(update)
    await message.reply_text(text(context.services.language_of(user), key))
