"""`build_application`: the PTB Application with our services, handlers and error handler.

Choices:
- `AIORateLimiter` for every outgoing request: it keeps under Telegram's global and per-chat
  limits and, on `RetryAfter`, waits the time Telegram asks for and retries (up to 3 times).
- `concurrent_updates`: users must not wait for each other's searches; the handlers are
  written for concurrency (storage upserts, per-query paging lock, bounded search slots).
- No job queue (nothing is scheduled) and no persistence (storage is the record).
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand, BotCommandScopeAllPrivateChats
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, ApplicationBuilder, ContextTypes

from bot.handlers import BEFORE_GROUP, before_handlers, handlers
from bot.handlers.errors import on_error
from bot.services import BotApplication, BotContext, BotData, BotServices
from bot.settings import BotSettings

log = logging.getLogger(__name__)

MAX_CONCURRENT_UPDATES = 256
RATE_LIMIT_RETRIES = 3

COMMANDS = {
    "en": [
        BotCommand("help", "how to search"),
        BotCommand("language", "English / Русский"),
    ],
    "ru": [
        BotCommand("help", "как искать"),
        BotCommand("language", "English / Русский"),
    ],
}


class MissingTokenError(ValueError):
    """TELEGRAM_BOT_TOKEN is not set."""


def build_application(settings: BotSettings, services: BotServices) -> BotApplication:
    """The Application for `settings`, with `services` reachable as `context.services`."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        raise MissingTokenError("TELEGRAM_BOT_TOKEN is not set")
    context_types = ContextTypes(context=BotContext, bot_data=BotData)
    application: BotApplication = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_api_file_url)
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .concurrent_updates(MAX_CONCURRENT_UPDATES)
        .context_types(context_types)
        .job_queue(None)
        .media_write_timeout(60)
        .post_init(_post_init)
        .build()
    )
    application.bot_data.services = services
    for handler in before_handlers():
        application.add_handler(handler, group=BEFORE_GROUP)
    for handler in handlers():
        application.add_handler(handler)
    application.add_error_handler(on_error)
    return application


async def _post_init(application: Any) -> None:
    """Log who we are and publish the command menu (best effort: a local stand-in of the
    Bot API may not implement setMyCommands, and the bot works without a menu)."""
    bot = application.bot
    api = bot.base_url.replace(bot.token, "<token>")
    log.info("bot @%s (id %s) connected to %s", bot.username, bot.id, api)
    for language, commands in COMMANDS.items():
        try:
            await bot.set_my_commands(
                commands,
                scope=BotCommandScopeAllPrivateChats(),
                language_code=None if language == "en" else language,
            )
        except TelegramError as exc:
            log.info("command menu not set (%s): %s", language, exc)
            break
