"""Everything the stand-in remembers, and the user's side of the conversation.

One `PlaygroundState` holds the chats (what users and the bot said, with edits), the queue of
updates the bot has not confirmed, pending callback queries, files, and a log of the bot's API
calls. It is shared by three parties running on different threads: the Bot API handlers (on the
server's event loop), tests (sync, on pytest's thread) and the web chat's HTTP handlers. So every
read and write takes one re-entrant lock, every change bumps `version` and wakes both kinds of
waiters: threads blocked in `wait_sync` (a Condition) and coroutines in `wait_async` (futures on
the server loop, woken through `call_soon_threadsafe`).

Private chats only: a fake user's chat id is the user's id, message ids count from 1 per chat
(as in Telegram, so a bot that keys anything by message_id alone breaks here too).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.playground.files import FileStore, StoredFile, StoredPhoto, placeholder_image
from bot.playground.models import (
    JSON,
    ApiCall,
    BotMessage,
    CallbackAnswer,
    Chat,
    Entry,
    FakeUser,
    PendingCallback,
)

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
# Update types Telegram delivers when a bot never set allowed_updates.
DEFAULT_UPDATE_TYPES = frozenset({"message", "edited_message", "callback_query"})
MAX_LOGGED_CALLS = 100_000


class PlaygroundState:
    """The shared, lock-protected model; see the module docstring."""

    def __init__(
        self,
        bot_user: JSON,
        *,
        callback_ttl: float = 15.0,
    ) -> None:
        self.bot_user = bot_user
        self.callback_ttl = callback_ttl
        self.lock = threading.RLock()
        self.condition = threading.Condition(self.lock)
        self.version = 0
        self.seq = 0
        self.files = FileStore()
        self.chats: dict[int, Chat] = {}
        self.updates: list[JSON] = []
        self.update_entries: dict[int, Entry] = {}
        self.next_update_id = 100_000_001
        self.allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
        self.webhook_url = ""
        self.callbacks: dict[str, PendingCallback] = {}
        self.api_calls: collections.deque[ApiCall] = collections.deque(maxlen=MAX_LOGGED_CALLS)
        self.failures: dict[str, list[int]] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.settings: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.async_waiters: set[asyncio.Future[None]] = set()
        self.stopping = False

    # ----- change notification -------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by the server once its loop runs: async waiters live on that loop."""
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def changed(self) -> None:
        """Wake every waiter; call after any change (with or without the lock held)."""
        with self.condition:
            self.version += 1
            self.condition.notify_all()
        loop = self.loop
        if loop is not None and not loop.is_closed():
            # The loop may close between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_async_waiters)

    def _wake_async_waiters(self) -> None:
        waiters, self.async_waiters = self.async_waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def async_waiter(self) -> asyncio.Future[None]:
        """A future on the server loop resolved by the next change (server loop only)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.async_waiters.add(waiter)
        return waiter

    def wait_sync(
        self, ready: Callable[[], T | None], timeout: float, poll: float = 0.05
    ) -> T | None:
        """Block until `ready()` returns non-None (or `timeout` passes: None).

        `ready` is evaluated outside the lock, and at least every `poll` seconds, so predicates
        over outside state (a database row) work too.
        """
        if self.loop_thread == threading.get_ident():
            raise RuntimeError(
                "a blocking wait on the stand-in's own event loop would deadlock; "
                "use the async waits of BotApiStandIn there"
            )
        deadline = time.monotonic() + timeout
        while True:
            seen = self.version
            value = ready()
            if value is not None:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self.condition:
                if self.version == seen:
                    self.condition.wait(min(remaining, poll))

    async def wait_async(
        self, ready: Callable[[], T | None], timeout: float, poll: float = 0.05
    ) -> T | None:
        """The coroutine twin of `wait_sync`, for code running on the server's loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            waiter = self.async_waiter() if loop is self.loop else None
            try:
                value = ready()
                if value is not None:
                    return value
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                if waiter is None:
                    await asyncio.sleep(min(remaining, poll))
                else:
                    await asyncio.wait({waiter}, timeout=min(remaining, poll))
            finally:
                if waiter is not None:
                    self.async_waiters.discard(waiter)

    # ----- chats and entries -----------------------------------------------------------------

    def touch_chat(self, user: FakeUser) -> Chat:
        """The user's chat, created on first contact; keeps the latest name/language."""
        with self.lock:
            chat = self.chats.get(user.id)
            if chat is None:
                chat = self.chats[user.id] = Chat(user=user)
            chat.user = user
            return chat

    def next_seq(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    def add_entry(
        self,
        chat: Chat,
        *,
        from_bot: bool,
        method: str,
        bodies: list[JSON],
        names: list[str | None] | None = None,
    ) -> Entry:
        """Append messages to `chat`, giving each the chat's next message id and the header."""
        with self.lock:
            now = int(time.time())
            messages: list[JSON] = []
            for body in bodies:
                message: JSON = {
                    "message_id": chat.next_message_id,
                    "from": self.bot_user if from_bot else chat.user.user_json(),
                    "chat": chat.user.chat_json(),
                    "date": now,
                }
                message.update(body)
                chat.next_message_id += 1
                messages.append(message)
            entry = Entry(
                seq=self.next_seq(),
                chat_id=chat.user.id,
                from_bot=from_bot,
                method=method,
                messages=messages,
                names=names or [None] * len(messages),
                sent_at=time.monotonic(),
            )
            chat.entries.append(entry)
            for index, message in enumerate(messages):
                chat.by_message_id[int(message["message_id"])] = (entry, index)
            if from_bot:
                chat.typing_until = 0.0
        self.changed()
        return entry

    def find_message(self, chat_id: int, message_id: int) -> tuple[Entry, int] | None:
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                return None
            return chat.by_message_id.get(message_id)

    def touch_entry(self, entry: Entry, *, edited: bool) -> None:
        """Record a change to an entry (edit or deletion) so pollers see it."""
        with self.lock:
            entry.seq = self.next_seq()
            if edited:
                entry.edits += 1
        self.changed()

    # ----- updates ---------------------------------------------------------------------------

    def add_update(self, kind: str, payload: JSON, entry: Entry | None = None) -> int | None:
        """Queue an update for getUpdates, unless the bot's allowed_updates exclude its type."""
        with self.lock:
            if kind not in self.allowed_updates:
                LOGGER.info("update of type %s dropped: not in allowed_updates", kind)
                return None
            update_id = self.next_update_id
            self.next_update_id += 1
            self.updates.append({"update_id": update_id, kind: payload})
            if entry is not None:
                self.update_entries[update_id] = entry
        self.changed()
        return update_id

    def confirm_updates(self, offset: int | None) -> None:
        """getUpdates' `offset`: forget updates below it (negative: keep only the last -offset)."""
        if offset is None:
            return
        with self.lock:
            if offset < 0:
                forgotten = self.updates[:offset] if -offset < len(self.updates) else []
                self.updates = self.updates[len(forgotten) :]
            else:
                forgotten = [u for u in self.updates if int(u["update_id"]) < offset]
                self.updates = [u for u in self.updates if int(u["update_id"]) >= offset]
            for update in forgotten:
                self.update_entries.pop(int(update["update_id"]), None)

    def drop_updates(self) -> None:
        with self.lock:
            self.updates.clear()
            self.update_entries.clear()

    def take_updates(self, limit: int) -> list[JSON]:
        """The first `limit` unconfirmed updates (they stay queued until confirmed)."""
        with self.lock:
            batch = self.updates[:limit]
            now = time.monotonic()
            for update in batch:
                entry = self.update_entries.get(int(update["update_id"]))
                if entry is not None and entry.delivered_at is None:
                    entry.delivered_at = now
            return copy.deepcopy(batch)

    # ----- the user's side -------------------------------------------------------------------

    def user_sends(
        self, user: FakeUser, method: str, body: JSON, names: list[str | None] | None = None
    ) -> int:
        """A fake user's message: stored in the chat and queued as a `message` update."""
        with self.lock:
            chat = self.touch_chat(user)
            entry = self.add_entry(chat, from_bot=False, method=method, bodies=[body], names=names)
            message = entry.messages[0]
            self.add_update("message", copy.deepcopy(message), entry)
            return int(message["message_id"])

    def send_text(self, user: FakeUser, text: str) -> int:
        body: JSON = {"text": text}
        entities = command_entities(text)
        if entities:
            body["entities"] = entities
        return self.user_sends(user, "text", body)

    def send_photo(
        self, user: FakeUser, data: bytes, caption: str | None = None, name: str | None = None
    ) -> int:
        try:
            photo = self.files.add_photo(data, upload_name=name)
        except Exception as error:
            raise ValueError(f"not a photo Telegram would accept: {error}") from error
        body: JSON = {"photo": photo.photo_sizes()}
        if caption:
            body["caption"] = caption
        return self.user_sends(user, "photo", body, [name])

    def send_sticker(self, user: FakeUser, emoji: str = "👍") -> int:
        stored = self.files.add_file(
            "sticker",
            placeholder_image(512, (255, 200, 80), "WEBP"),
            mime_type="image/webp",
            width=512,
            height=512,
        )
        sticker: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": len(stored.data),
        }
        return self.user_sends(user, "sticker", {"sticker": sticker})

    def send_voice(self, user: FakeUser, duration: int = 2) -> int:
        data = b"OggS" + bytes(2000)
        stored = self.files.add_file("voice", data, mime_type="audio/ogg")
        voice: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": len(data),
        }
        return self.user_sends(user, "voice", {"voice": voice})

    def send_document(
        self,
        user: FakeUser,
        data: bytes,
        filename: str,
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> int:
        stored = self.files.add_file("document", data, file_name=filename, mime_type=mime_type)
        body: JSON = {"document": stored.document()}
        if caption:
            body["caption"] = caption
        return self.user_sends(user, "document", body, [filename])

    def press_button(
        self,
        user: FakeUser,
        message_id: int,
        callback_data: str,
        *,
        chat_id: int | None = None,
        check: bool = True,
    ) -> str:
        """Press an inline button: queue a `callback_query` update, return its id.

        With `check` (the default) the button must be on the message now, as in a real app;
        `check=False` lets a test forge any data, or press in another user's chat (`chat_id`).
        """
        with self.lock:
            self.touch_chat(user)
            where = chat_id if chat_id is not None else user.id
            found = self.find_message(where, message_id)
            if found is None or not found[0].from_bot:
                raise ValueError(f"no bot message {message_id} in chat {where}")
            entry, index = found
            if message_id in entry.deleted_ids:
                raise ValueError(f"message {message_id} in chat {where} was deleted")
            message = entry.messages[index]
            available = keyboard_data(message.get("reply_markup"))
            if check and callback_data not in available:
                raise ValueError(
                    f"message {message_id} has no button with callback_data {callback_data!r}; "
                    f"it has {available}"
                )
            callback_id = str(secrets.randbits(63))
            chat = self.chats[where]
            query: JSON = {
                "id": callback_id,
                "from": user.user_json(),
                "message": copy.deepcopy(message),
                "chat_instance": chat.chat_instance,
                "data": callback_data,
            }
            self.callbacks[callback_id] = PendingCallback(
                callback_id, where, message_id, time.monotonic()
            )
            self.add_update("callback_query", query)
            return callback_id

    def set_blocked(self, user: FakeUser, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them fail with 403."""
        with self.lock:
            self.touch_chat(user).blocked = blocked
        self.changed()

    # ----- reading ---------------------------------------------------------------------------

    def bot_messages(self, chat_id: int) -> list[BotMessage]:
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                return []
            return [self.bot_message(entry) for entry in chat.entries if entry.from_bot]

    def bot_message(self, entry: Entry) -> BotMessage:
        with self.lock:
            messages = entry.messages
            first = messages[0]
            photos: list[str] = []
            photo_names: list[str | None] = []
            for message, name in zip(messages, entry.names, strict=True):
                if message.get("photo"):
                    photos.append(message["photo"][-1]["file_id"])
                    photo_names.append(name)
            document = first.get("document") or {}
            captions = [message.get("caption") for message in messages]
            return BotMessage(
                message_id=int(first["message_id"]),
                chat_id=entry.chat_id,
                method=entry.method,
                text=first.get("text"),
                caption=next((c for c in captions if c), None),
                photo_file_ids=photos,
                media_group_id=first.get("media_group_id"),
                reply_markup=copy.deepcopy(messages[-1].get("reply_markup")),
                document_name=document.get("file_name"),
                document_file_id=document.get("file_id"),
                edits=entry.edits,
                date=int(first["date"]),
                message_ids=entry.message_ids,
                captions=captions,
                photo_names=photo_names,
                entities=copy.deepcopy(first.get("entities", [])),
                deleted=entry.deleted,
                seq=entry.seq,
                sent_at=entry.sent_at,
            )

    def entries_after(self, chat_id: int, after: int) -> list[Entry]:
        """Entries of a chat changed after sequence number `after` (for the web chat)."""
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None:
                return []
            return [entry for entry in chat.entries if entry.seq > after]

    def callback_answer(self, callback_id: str) -> CallbackAnswer | None:
        with self.lock:
            pending = self.callbacks.get(callback_id)
            if pending is None:
                raise KeyError(f"unknown callback query id {callback_id!r}")
            return pending.answer

    def file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise KeyError(f"unknown file_id {file_id!r}")
        return stored

    def photo(self, file_id: str) -> StoredPhoto:
        photo = self.files.photo(file_id)
        if photo is None:
            raise KeyError(f"{file_id!r} is not a photo's file_id")
        return photo

    def delivered_at(self, chat_id: int, message_id: int) -> float | None:
        """When getUpdates first handed the user's message to the bot (`time.monotonic()`)."""
        found = self.find_message(chat_id, message_id)
        return None if found is None else found[0].delivered_at

    def calls(self, method: str | None = None) -> list[ApiCall]:
        with self.lock:
            if method is None:
                return list(self.api_calls)
            wanted = method.lower()
            return [call for call in self.api_calls if call.method.lower() == wanted]

    def log_call(self, call: ApiCall) -> None:
        with self.lock:
            self.api_calls.append(call)

    def fail_next(self, method: str, times: int, retry_after: int) -> None:
        """Make the next `times` calls of `method` answer 429 with `retry_after`."""
        with self.lock:
            if times <= 0:
                self.failures.pop(method.lower(), None)
            else:
                self.failures[method.lower()] = [times, retry_after]

    def take_failure(self, method: str) -> int | None:
        """The retry_after for this call if it is to fail (and count it), else None."""
        with self.lock:
            planned = self.failures.get(method.lower())
            if planned is None:
                return None
            planned[0] -= 1
            if planned[0] <= 0:
                del self.failures[method.lower()]
            return planned[1]

    def commands_for(self, language_code: str = "", chat_id: int | None = None) -> list[JSON]:
        """The command list a Telegram app shows in a private chat, most specific scope first.

        The order is the Bot API's: the chat's scope, all private chats, default; each with the
        user's language before the language-less list.
        """
        scopes = ([f"chat:{chat_id}"] if chat_id is not None else []) + [
            "all_private_chats",
            "default",
        ]
        with self.lock:
            for scope in scopes:
                for language in (language_code, ""):
                    if (scope, language) in self.commands:
                        return copy.deepcopy(self.commands[(scope, language)])
            return []


def command_entities(text: str) -> list[JSON]:
    """A `bot_command` entity for a leading /command (what CommandHandler looks for).

    Telegram marks commands of Latin letters, digits and underscores, optionally with
    @botusername; "/помощь" is plain text to it and so to the bot.
    """
    match = re.match(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?=\s|$)", text)
    if match is None:
        return []
    return [{"type": "bot_command", "offset": 0, "length": len(match.group())}]


def keyboard_data(markup: JSON | None) -> list[str]:
    """All callback_data values on an inline keyboard."""
    rows = (markup or {}).get("inline_keyboard", [])
    return [str(b["callback_data"]) for row in rows for b in row if "callback_data" in b]
