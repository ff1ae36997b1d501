"""The bot's handlers, one concept each, and the table that routes updates to them.

Order matters in PTB's group 0 (first match wins): commands, then new messages by content
type (text and photos are queries; stickers, voice, documents, the rest get a short answer),
then edited messages, then buttons by their callback prefix. Queries are only taken in private
chats, where the bot is a search box; in groups it answers commands only.

Before any of them (group `BEFORE_GROUP`), `before_handlers` read the sender's stored state that
every handler needs (their /language choice), so the handlers themselves stay synchronous there.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.handlers import admin, commands, reports, search, votes
from bot.services import BotContext

BEFORE_GROUP = -1


async def load_sender_state(update: Update, context: BotContext) -> None:
    """Runs first for every update: the sender's /language choice, read from storage."""
    await context.services.load_language(update.effective_user)


def before_handlers() -> list[BaseHandler[Update, BotContext, object]]:
    """Handlers for group `BEFORE_GROUP`: they run for every update, before `handlers()`."""
    return [TypeHandler(Update, load_sender_state)]


def handlers() -> list[BaseHandler[Update, BotContext, object]]:
    new = filters.UpdateType.MESSAGE
    private = new & filters.ChatType.PRIVATE
    return [
        CommandHandler("start", commands.on_start, filters=new),
        CommandHandler("help", commands.on_help, filters=new),
        CommandHandler("language", commands.on_language, filters=new),
        CommandHandler("stats", admin.on_stats, filters=new),
        CommandHandler("export", admin.on_export, filters=new),
        CommandHandler("reindex", admin.on_reindex, filters=new),
        MessageHandler(private & filters.COMMAND, commands.on_unknown_command),
        MessageHandler(private & filters.TEXT, search.on_text_query),
        MessageHandler(private & filters.PHOTO, search.on_photo_query),
        MessageHandler(private & filters.Sticker.ALL, commands.on_sticker),
        MessageHandler(
            private & (filters.VOICE | filters.AUDIO | filters.VIDEO_NOTE), commands.on_voice
        ),
        MessageHandler(private & (filters.VIDEO | filters.ANIMATION), commands.on_video),
        MessageHandler(private & filters.Document.ALL, commands.on_document),
        MessageHandler(private, commands.on_other),
        MessageHandler(
            filters.UpdateType.EDITED_MESSAGE & filters.ChatType.PRIVATE, commands.on_edited
        ),
        CallbackQueryHandler(votes.on_vote, pattern=r"^v\."),
        CallbackQueryHandler(reports.on_report, pattern=r"^r\."),
        CallbackQueryHandler(search.on_more, pattern=r"^m\."),
        CallbackQueryHandler(commands.on_language_button, pattern=r"^l\."),
        CallbackQueryHandler(commands.on_stale_button),
    ]
