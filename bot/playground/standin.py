"""A local stand-in for the Telegram Bot API server, for tests and the playground.

The real python-telegram-bot client talks to it over HTTP exactly as to api.telegram.org; a
test (or the web chat) plays the user. One aiohttp server on 127.0.0.1 serves:

- `POST|GET /bot{token}/{method}` — the Bot API (form, multipart or JSON bodies; Telegram's
  `{"ok": ...}` envelope and error texts). Point the bot at it with
  `Bot(token, base_url=client.base_url, base_file_url=client.file_url)`, or for `python -m bot`
  with `TELEGRAM_API_BASE_URL` / `TELEGRAM_API_FILE_URL`.
- `GET /file/bot{token}/{file_path}` — file downloads after getFile.
- `/_user/...` — the user's side as JSON over HTTP (see `bot.playground.userapi`), and `/` —
  the web chat page (see `bot.playground.webchat`).

Methods: getMe, getUpdates (long polling, offset/limit/timeout/allowed_updates; updates are
re-delivered until a later offset confirms them; a newer getUpdates ends a pending one with
409 Conflict; pending polls return at once on shutdown), deleteWebhook/setWebhook/
getWebhookInfo (no webhook delivery), set/get/deleteMyCommands, set/getChatMenuButton,
set/getMyName/Description/ShortDescription, sendMessage, sendPhoto, sendDocument,
sendMediaGroup, sendChatAction, editMessageText, editMessageCaption, editMessageReplyMarkup,
deleteMessage(s), answerCallbackQuery, getFile, close, logOut. Details in `botapi`;
parse_mode HTML/MarkdownV2/Markdown is parsed into entities, errors and all (`textparse`).

Deliberately unlike Telegram: private chats only (chat id == user id); a one-item
sendMediaGroup is refused (the docs say 2-10; the real server would send a lone message)
unless `strict_albums=False`; a press must be answered within `callback_ttl` seconds (15;
Telegram's limit is undocumented and of that order); photos get two sizes, a <=320 px
thumbnail and the uploaded bytes unchanged; no webhook delivery, groups, inline mode,
payments or flood limits (inject 429s with `fail_next`). A long poll whose client had already
gone is logged with status 499, never answered 409, so a 409 in `calls()` is a real conflict.

Tests identify which pictures were sent by their upload names: give InputMediaPhoto a
`filename=` (e.g. the photo's path) and read `BotMessage.photo_names`; re-sends by file_id
keep the name of the first upload.

Python API (all names importable from `bot.playground`)::

    FakeUser(id, first_name="Test", username=None, language_code="en")   # chat id == id

    BotApiStandIn(token, *, host="127.0.0.1", port=0, bot_username="photo_search_bot",
                  bot_first_name="Photo Search", strict_albums=True, callback_ttl=15.0,
                  web_user=None)
        await start(); await stop()  (or `async with`); base_url, file_url, url, port, token
        client: StandInClient          # the same user API; its *blocking* waits refuse to run
                                       # on this loop, so in async tests use the awaitables:
        await wait_for_messages(chat_id, count, timeout=30) -> list[BotMessage]
        await wait_until(predicate, timeout=30) -> None
        await callback_answer(callback_id, timeout=10) -> CallbackAnswer | None

    StandInThread(token, **same options)   # runs a BotApiStandIn on its own thread and loop
        with StandInThread(TOKEN) as client: ...   # client: StandInClient

    StandInClient  (thread-safe; actions return at once, waits block the calling thread)
        base_url, file_url, url, token, bot_username
        send_text(user, text) -> message_id          # /commands get a bot_command entity
        send_photo(user, jpeg, caption=None, filename=None) -> message_id
        send_sticker(user, emoji="👍") / send_voice(user) -> message_id
        send_document(user, data, filename, mime_type=None, caption=None) -> message_id
        press_button(user, message_id, callback_data, *, chat_id=None, check=True) -> callback id
        add_user(user)                               # known chat, nothing sent (no update)
        block(user, blocked=True)                    # the bot gets 403 for this chat
        bot_messages(chat_id) -> list[BotMessage]    # per send call, current state after edits
        wait_for_messages(chat_id, count, timeout=30) -> list[BotMessage]
        wait_until(predicate, timeout=30) -> None    # predicate re-checked on changes/50 ms
        callback_answer(callback_id, timeout=10) -> CallbackAnswer | None
        photo_bytes(file_id) / file_bytes(file_id) -> bytes
        calls(method=None) -> list[ApiCall]          # the bot's requests, in order
        fail_next(method, times=1, retry_after=1)    # 429 "Too Many Requests: retry after N"
        pending_updates() -> list[dict]; delivered_at(chat_id, message_id) -> float | None
        commands(language_code="", chat_id=None) -> list[dict]; typing(chat_id) -> bool

Blocking waits raise TimeoutError with what the bot did send and its recent failed calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from bot.playground import userapi, webchat
from bot.playground.botapi import BotApi
from bot.playground.errors import ApiError, not_found, too_many_requests, unauthorized
from bot.playground.models import JSON, ApiCall, BotMessage, CallbackAnswer, FakeUser
from bot.playground.params import read_params
from bot.playground.state import PlaygroundState

LOGGER = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 50 * 1024 * 1024 + 1024 * 1024  # Telegram's 50 MB upload, plus the form
DEFAULT_WEB_USER = FakeUser(id=100_001, first_name="Demo", username="demo_user")


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _check_loopback(host: str) -> None:
    """The stand-in has no authentication on `/_user/`: never expose it beyond this machine."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the stand-in binds to loopback addresses only, not {host!r}")


class BotApiStandIn:
    """The aiohttp application plus its state; see the module docstring."""

    def __init__(
        self,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "photo_search_bot",
        bot_first_name: str = "Photo Search",
        strict_albums: bool = True,
        callback_ttl: float = 15.0,
        web_user: FakeUser | None = None,
    ) -> None:
        _check_loopback(host)
        if not token:
            raise ValueError("token must not be empty")
        self.token = token
        self.host = host
        self.port = port
        prefix = token.split(":", 1)[0]
        bot_user: JSON = {
            "id": int(prefix) if prefix.isdigit() else 1_000_000,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.state = PlaygroundState(bot_user, callback_ttl=callback_ttl)
        self.api = BotApi(self.state, strict_albums=strict_albums)
        self.web_user = web_user or DEFAULT_WEB_USER
        self.client = StandInClient(self)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_download)
        userapi.add_routes(app, self)
        webchat.add_routes(app)
        return app

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        if self._runner is None:
            raise RuntimeError("the stand-in is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For `Bot(base_url=...)` / TELEGRAM_API_BASE_URL: the token is appended to it."""
        return f"{self.origin}/bot"

    @property
    def file_url(self) -> str:
        """For `Bot(base_file_url=...)` / TELEGRAM_API_FILE_URL."""
        return f"{self.origin}/file/bot"

    @property
    def url(self) -> str:
        """The web chat."""
        return f"{self.origin}/"

    async def start(self) -> None:
        self.state.stopping = False
        self.state.attach_loop(asyncio.get_running_loop())
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        LOGGER.info("Bot API stand-in listening on %s", self.origin)

    async def stop(self) -> None:
        """Answer pending long polls, then close the server."""
        self.state.stopping = True
        self.api.shutdown()
        self.state.changed()
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            LOGGER.info("Bot API stand-in stopped")

    async def __aenter__(self) -> BotApiStandIn:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----- async waits (for code on the server's loop) ---------------------------------------

    async def wait_for_messages(
        self, chat_id: int, count: int, timeout: float = 30
    ) -> list[BotMessage]:
        result = await self.state.wait_async(
            lambda: _at_least(self.state.bot_messages(chat_id), count), timeout
        )
        if result is None:
            raise TimeoutError(self.client.describe_shortfall(chat_id, count, timeout))
        return result

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        if await self.state.wait_async(lambda: True if predicate() else None, timeout) is None:
            raise TimeoutError(f"condition not met within {timeout} s")

    async def callback_answer(self, callback_id: str, timeout: float = 10) -> CallbackAnswer | None:
        return await self.state.wait_async(lambda: self.state.callback_answer(callback_id), timeout)

    # ----- HTTP handlers ---------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        method = request.match_info["method"]
        logged: JSON = {}
        try:
            if request.match_info["token"] != self.token:
                raise unauthorized()
            resolved = self.api.resolve(method)
            if resolved is None:
                raise not_found()
            method, handler = resolved
            params = await read_params(request)
            logged = params.for_log()
            retry_after = self.state.take_failure(method)
            if retry_after is not None:
                raise too_many_requests(retry_after)
            result = await self.api.call(handler, params)
            status, body, description = 200, {"ok": True, "result": result}, None
        except ApiError as error:
            status, body, description = error.status, error.payload(), error.description
        except Exception:
            LOGGER.exception("stand-in failed on %s", method)
            status, description = 500, "Internal Server Error"
            body = {"ok": False, "error_code": 500, "description": description}
        duration = time.monotonic() - started
        self.state.log_call(ApiCall(method, logged, started, duration, status, description))
        if status != 200:
            LOGGER.info("%s -> %d %s", method, status, description)
        else:
            LOGGER.debug("%s -> 200 in %.1f ms", method, duration * 1000)
        return web.json_response(body, status=status, dumps=_compact_json)

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            error = unauthorized()
            return web.json_response(error.payload(), status=error.status)
        stored = self.state.files.by_path(request.match_info["path"])
        if stored is None:
            error = not_found()
            return web.json_response(error.payload(), status=error.status)
        return web.Response(body=stored.data, content_type=stored.mime_type)


def _at_least(messages: list[BotMessage], count: int) -> list[BotMessage] | None:
    return messages if len(messages) >= count else None


class StandInClient:
    """The user's side and the observer's view, synchronous and thread-safe.

    Actions (send_*, press_button) return as soon as the update is queued. Waits block the
    calling thread; calling one on the stand-in's own loop raises instead of deadlocking.
    """

    def __init__(self, stand_in: BotApiStandIn) -> None:
        self._stand_in = stand_in
        self._state = stand_in.state

    @property
    def token(self) -> str:
        return self._stand_in.token

    @property
    def base_url(self) -> str:
        return self._stand_in.base_url

    @property
    def file_url(self) -> str:
        return self._stand_in.file_url

    @property
    def url(self) -> str:
        return self._stand_in.url

    @property
    def bot_username(self) -> str:
        return str(self._state.bot_user["username"])

    # ----- acting as the user ----------------------------------------------------------------

    def send_text(self, user: FakeUser, text: str) -> int:
        """The user types `text`; returns its message_id."""
        return self._state.send_text(user, text)

    def send_photo(
        self, user: FakeUser, jpeg: bytes, caption: str | None = None, filename: str | None = None
    ) -> int:
        """The user sends a photo (bytes kept as given; ValueError if not an image)."""
        return self._state.send_photo(user, jpeg, caption, filename)

    def send_sticker(self, user: FakeUser, emoji: str = "👍") -> int:
        return self._state.send_sticker(user, emoji)

    def send_voice(self, user: FakeUser) -> int:
        return self._state.send_voice(user)

    def send_document(
        self,
        user: FakeUser,
        data: bytes,
        filename: str,
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> int:
        return self._state.send_document(user, data, filename, mime_type, caption)

    def press_button(
        self,
        user: FakeUser,
        message_id: int,
        callback_data: str,
        *,
        chat_id: int | None = None,
        check: bool = True,
    ) -> str:
        """Press an inline button on the bot's message; returns the callback_query id.

        ValueError if the message has no such button now (unless `check=False`, for forging).
        """
        return self._state.press_button(
            user, message_id, callback_data, chat_id=chat_id, check=check
        )

    def add_user(self, user: FakeUser) -> None:
        """A user who started the bot earlier: the bot may message them, no update is queued."""
        self._state.touch_chat(user)
        self._state.changed()

    def block(self, user: FakeUser, blocked: bool = True) -> None:
        self._state.set_blocked(user, blocked)

    # ----- observing -------------------------------------------------------------------------

    def bot_messages(self, chat_id: int) -> list[BotMessage]:
        return self._state.bot_messages(chat_id)

    def wait_for_messages(self, chat_id: int, count: int, timeout: float = 30) -> list[BotMessage]:
        """Block until the bot has sent at least `count` messages (sends) to the chat."""
        result = self._state.wait_sync(
            lambda: _at_least(self._state.bot_messages(chat_id), count), timeout
        )
        if result is None:
            raise TimeoutError(self.describe_shortfall(chat_id, count, timeout))
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30) -> None:
        if self._state.wait_sync(lambda: True if predicate() else None, timeout) is None:
            raise TimeoutError(f"condition not met within {timeout} s")

    def callback_answer(self, callback_id: str, timeout: float = 10) -> CallbackAnswer | None:
        """The bot's answer to a press, waiting up to `timeout`; None if it never answered."""
        return self._state.wait_sync(lambda: self._state.callback_answer(callback_id), timeout)

    def photo_bytes(self, file_id: str) -> bytes:
        """The largest size of the photo (uploaded bytes, unchanged)."""
        return self._state.photo(file_id).largest.data

    def file_bytes(self, file_id: str) -> bytes:
        return self._state.file(file_id).data

    def calls(self, method: str | None = None) -> list[ApiCall]:
        return self._state.calls(method)

    def fail_next(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        self._state.fail_next(method, times, retry_after)

    def pending_updates(self) -> list[JSON]:
        with self._state.lock:
            return json.loads(json.dumps(self._state.updates))  # type: ignore[no-any-return]

    def delivered_at(self, chat_id: int, message_id: int) -> float | None:
        return self._state.delivered_at(chat_id, message_id)

    def commands(self, language_code: str = "", chat_id: int | None = None) -> list[JSON]:
        """The bot's commands as the user's app would list them (see setMyCommands scopes)."""
        return self._state.commands_for(language_code, chat_id)

    def typing(self, chat_id: int) -> bool:
        with self._state.lock:
            chat = self._state.chats.get(chat_id)
            return chat is not None and chat.typing_until > time.monotonic()

    def describe_shortfall(self, chat_id: int, count: int, timeout: float) -> str:
        """What a failed wait reports: what arrived, and the bot's recent failed calls."""
        sent = self._state.bot_messages(chat_id)
        summary = [
            f"{m.method}({(m.text or m.caption or ', '.join(m.photo_file_ids))[:60]!r})"
            for m in sent
        ]
        failed = [
            f"{call.method}: {call.status} {call.description}"
            for call in self._state.calls()
            if not call.ok and call.method != "getUpdates"
        ][-5:]
        return (
            f"chat {chat_id}: waited {timeout} s for {count} bot messages, got {len(sent)}: "
            f"{summary}; recent failed calls: {failed or 'none'}"
        )


class StandInThread:
    """Runs a BotApiStandIn on a background thread with its own event loop.

    `with StandInThread(TOKEN) as client:` starts it (the port is free-chosen unless given)
    and stops it on exit, answering any pending long poll first.
    """

    def __init__(self, token: str, **options: Any) -> None:
        self.stand_in = BotApiStandIn(token, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> StandInClient:
        self._thread = threading.Thread(target=self._run, name="bot-api-stand-in", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the stand-in did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the stand-in failed to start") from self._error
        return self.stand_in.client

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.stand_in.start())
        except BaseException as error:  # reported to __enter__
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.stand_in.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.stand_in.stop(), loop)
        try:
            future.result(15)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)
