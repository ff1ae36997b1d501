"""A whole python-telegram-bot Application polling a StandInThread, as the bot's e2e tests will.

The stand-in runs on its own thread (StandInThread); the bot runs on another thread with its own
loop, like a separate process would; the test thread acts as the user through the sync client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.playground import FakeUser, StandInClient, StandInThread
from tests.playground.conftest import TOKEN, jpeg


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"hello, args={context.args}")


async def echo(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("👍", callback_data="up")]])
    await message.reply_text(message.text.upper(), reply_markup=markup)


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    file = await context.bot.get_file(message.photo[-1].file_id)
    size = len(await file.download_as_bytearray())
    await message.reply_text(f"got {size} bytes")


async def vote(update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("noted")
    await query.edit_message_reply_markup(
        InlineKeyboardMarkup([[InlineKeyboardButton("👍 ✓", callback_data="up")]])
    )


class BotThread:
    """Runs the Application's polling on its own loop until stopped."""

    def __init__(self, client: StandInClient) -> None:
        self.application = (
            Application.builder()
            .token(TOKEN)
            .base_url(client.base_url)
            .base_file_url(client.file_url)
            .rate_limiter(AIORateLimiter(max_retries=2))
            .build()
        )
        self.application.add_handler(CommandHandler("start", start))
        self.application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
        self.application.add_handler(MessageHandler(filters.PHOTO, photo))
        self.application.add_handler(CallbackQueryHandler(vote))
        self.loop = asyncio.new_event_loop()
        self.stopped = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),))

    async def run(self) -> None:
        async with self.application:
            assert self.application.updater is not None
            await self.application.updater.start_polling(poll_interval=0, timeout=5)
            await self.application.start()
            await self.stopped.wait()
            await self.application.updater.stop()
            await self.application.stop()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(20)
        self.loop.close()


@pytest.fixture
def client() -> Iterator[StandInClient]:
    with StandInThread(TOKEN) as running:
        yield running


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_application_conversation(client: StandInClient) -> None:
    user = FakeUser(id=77, first_name="Bo", language_code="en")
    bot = BotThread(client)
    bot.thread.start()
    try:
        client.send_text(user, "/start 7 days")
        (greeting,) = client.wait_for_messages(user.id, 1, timeout=10)
        assert greeting.text == "hello, args=['7', 'days']"

        client.fail_next("sendMessage", times=1, retry_after=1)
        started = time.monotonic()
        client.send_text(user, "sunset")
        reply = client.wait_for_messages(user.id, 2, timeout=10)[-1]
        assert reply.text == "SUNSET" and reply.callback_data == ["up"]
        assert time.monotonic() - started >= 1  # the rate limiter waited out the 429

        callback_id = client.press_button(user, reply.message_id, "up")
        answer = client.callback_answer(callback_id, timeout=10)
        assert answer is not None and answer.text == "noted"
        client.wait_until(lambda: client.bot_messages(user.id)[-1].edits == 1, timeout=10)
        assert client.bot_messages(user.id)[-1].buttons == [[("👍 ✓", "up")]]

        picture = jpeg(500, 400)
        client.send_photo(user, picture)
        done = client.wait_for_messages(user.id, 3, timeout=10)[-1]
        assert done.text == f"got {len(picture)} bytes"

        with pytest.raises(TimeoutError, match="got 3"):
            client.wait_for_messages(user.id, 4, timeout=0.3)
    finally:
        bot.stop()
    # PTB's shutdown confirms what it handled with one last getUpdates: no Conflict, no backlog.
    assert {call.status for call in client.calls("getUpdates")} <= {200, 499}
    assert client.pending_updates() == []
