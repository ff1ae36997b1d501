"""The Bot API methods the stand-in implements, on top of `PlaygroundState`.

Each method checks its parameters the way Telegram does and fails with Telegram's error (see
`errors`), because the point of the stand-in is that a bot which works here works against
api.telegram.org, and one that would get a 400 there gets it here. Method names are matched
case-insensitively, as Telegram does. Anything not listed answers 404 "Not Found", which
python-telegram-bot reports as InvalidToken, loudly enough to notice a missing method.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.playground import checks
from bot.playground.errors import (
    CONFLICT_POLL,
    CONFLICT_WEBHOOK,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    ApiError,
    bad_request,
    forbidden,
)
from bot.playground.files import MAX_DOWNLOAD_BYTES, StoredFile, StoredPhoto
from bot.playground.models import JSON, CallbackAnswer, Chat, Entry
from bot.playground.params import Params, Upload
from bot.playground.state import DEFAULT_UPDATE_TYPES, PlaygroundState

LOGGER = logging.getLogger(__name__)
MAX_ALBUM = 10
CHAT_ACTION_SECONDS = 5.0
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_POLL_CONFLICT = "conflict"
_POLL_ABANDONED = "abandoned"
_POLL_SHUTDOWN = "shutdown"
# Logged (never seen by a client) for a long poll whose client had already gone.
CLIENT_CLOSED = 499

Handler = Callable[[Params], Any]


class BotApi:
    """Method dispatch plus the long-poll bookkeeping of getUpdates."""

    def __init__(self, state: PlaygroundState, *, strict_albums: bool = True) -> None:
        self.state = state
        self.strict_albums = strict_albums
        self._poll: asyncio.Future[str] | None = None
        self._poll_connected: Callable[[], bool] = lambda: True
        self.methods: dict[str, tuple[str, Handler]] = {}
        for name, handler in self._handlers().items():
            self.methods[name.lower()] = (name, handler)

    def _handlers(self) -> dict[str, Handler]:
        return {
            "getMe": lambda _: self.state.bot_user,
            "logOut": lambda _: True,
            "close": lambda _: True,
            "getUpdates": self.get_updates,
            "setWebhook": self.set_webhook,
            "deleteWebhook": self.delete_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "setMyCommands": self.set_my_commands,
            "getMyCommands": self.get_my_commands,
            "deleteMyCommands": self.delete_my_commands,
            "setChatMenuButton": self.set_setting("menu_button", "menu_button"),
            "getChatMenuButton": self.get_setting("menu_button", {"type": "commands"}),
            "setMyDescription": self.set_setting("description", "description"),
            "getMyDescription": self.get_setting("description", None),
            "setMyShortDescription": self.set_setting("short_description", "short_description"),
            "getMyShortDescription": self.get_setting("short_description", None),
            "setMyName": self.set_setting("name", "name"),
            "getMyName": self.get_setting("name", None),
            "sendMessage": self.send_message,
            "sendPhoto": self.send_photo,
            "sendDocument": self.send_document,
            "sendMediaGroup": self.send_media_group,
            "sendChatAction": self.send_chat_action,
            "editMessageText": self.edit_message_text,
            "editMessageCaption": self.edit_message_caption,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "deleteMessage": self.delete_message,
            "deleteMessages": self.delete_messages,
            "answerCallbackQuery": self.answer_callback_query,
            "getFile": self.get_file,
        }

    def resolve(self, method: str) -> tuple[str, Handler] | None:
        return self.methods.get(method.lower())

    async def call(self, handler: Handler, params: Params) -> Any:
        result = handler(params)
        if isinstance(result, Awaitable):
            result = await result
        return result

    # ----- updates ---------------------------------------------------------------------------

    async def get_updates(self, params: Params) -> list[JSON]:
        """Long polling: re-delivers until a later offset confirms; a newer poll ends an older.

        Telegram answers a pending getUpdates with 409 when another one arrives, so whichever
        of two bot processes was waiting sees the Conflict, and a client that abandoned its
        poll (python-telegram-bot cancels it on shutdown, then confirms with a last short
        poll) is not the one refused. A poll whose client has already disconnected is ended
        quietly and logged with status 499, so a 409 in the call log is a real conflict.
        """
        offset = params.integer("offset")
        limit = min(max(params.integer("limit") or 100, 1), 100)
        timeout = max(params.number("timeout") or 0.0, 0.0)
        allowed = params.json("allowed_updates", "can't parse allowed updates")
        state = self.state
        with state.lock:
            if state.webhook_url:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if isinstance(allowed, list):
                chosen = frozenset(str(kind) for kind in allowed)
                state.allowed_updates = chosen or DEFAULT_UPDATE_TYPES
            state.confirm_updates(offset)
        previous, previous_connected = self._poll, self._poll_connected
        if previous is not None and not previous.done():
            await asyncio.sleep(0)  # let the loop notice a connection its client just closed
            if not previous.done():
                alive = previous_connected()
                previous.set_result(_POLL_CONFLICT if alive else _POLL_ABANDONED)
        loop = asyncio.get_running_loop()
        mine: asyncio.Future[str] = loop.create_future()
        self._poll = mine
        self._poll_connected = params.connected
        deadline = loop.time() + timeout
        try:
            while True:
                waiter = state.async_waiter()
                try:
                    batch = state.take_updates(limit)
                    if batch or state.stopping or timeout == 0:
                        return batch
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return []
                    watched: set[asyncio.Future[Any]] = {mine, waiter}
                    await asyncio.wait(
                        watched, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    state.async_waiters.discard(waiter)
                if mine.done():
                    if mine.result() == _POLL_CONFLICT:
                        raise ApiError(409, CONFLICT_POLL)
                    if mine.result() == _POLL_ABANDONED:
                        raise ApiError(CLIENT_CLOSED, "client closed the connection")
                    return state.take_updates(limit)
        finally:
            if self._poll is mine:
                self._poll = None

    def shutdown(self) -> None:
        """Answer a pending long poll now (empty), so the bot is not left hanging."""
        if self._poll is not None and not self._poll.done():
            self._poll.set_result(_POLL_SHUTDOWN)

    def set_webhook(self, params: Params) -> bool:
        url = params.text("url") or ""
        with self.state.lock:
            self.state.webhook_url = url
            if params.boolean("drop_pending_updates"):
                self.state.drop_updates()
        LOGGER.warning("setWebhook accepted, but the stand-in only delivers updates by getUpdates")
        return True

    def delete_webhook(self, params: Params) -> bool:
        with self.state.lock:
            self.state.webhook_url = ""
            if params.boolean("drop_pending_updates"):
                self.state.drop_updates()
        return True

    def get_webhook_info(self, _: Params) -> JSON:
        with self.state.lock:
            return {
                "url": self.state.webhook_url,
                "has_custom_certificate": False,
                "pending_update_count": len(self.state.updates),
            }

    # ----- bot settings ----------------------------------------------------------------------

    @staticmethod
    def _scope_key(params: Params) -> str:
        scope = params.json("scope", "can't parse BotCommandScope JSON object") or {}
        if not isinstance(scope, dict):
            raise bad_request("can't parse BotCommandScope JSON object")
        kind = str(scope.get("type", "default"))
        if "chat_id" in scope:
            kind += f":{scope['chat_id']}"
        if "user_id" in scope:
            kind += f":{scope['user_id']}"
        return kind

    def set_my_commands(self, params: Params) -> bool:
        commands = params.json("commands", "can't parse commands JSON object")
        if not isinstance(commands, list):
            raise bad_request('parameter "commands" is required')
        if len(commands) > 100:
            raise bad_request("BOT_COMMANDS_TOO_MUCH")
        cleaned: list[JSON] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", ""))
            if not _COMMAND.fullmatch(name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = (self._scope_key(params), params.text("language_code") or "")
        with self.state.lock:
            self.state.commands[key] = cleaned
        self.state.changed()
        return True

    def get_my_commands(self, params: Params) -> list[JSON]:
        key = (self._scope_key(params), params.text("language_code") or "")
        with self.state.lock:
            return copy.deepcopy(self.state.commands.get(key, []))

    def delete_my_commands(self, params: Params) -> bool:
        key = (self._scope_key(params), params.text("language_code") or "")
        with self.state.lock:
            self.state.commands.pop(key, None)
        self.state.changed()
        return True

    def set_setting(self, key: str, name: str) -> Handler:
        def handler(params: Params) -> bool:
            value = params.json(name, f"can't parse {name}") if name == "menu_button" else None
            with self.state.lock:
                self.state.settings[key] = value if value is not None else params.text(name)
            return True

        return handler

    def get_setting(self, key: str, default: Any) -> Handler:
        def handler(_: Params) -> Any:
            with self.state.lock:
                value = self.state.settings.get(key, default)
            if key == "menu_button":
                return value
            return {key: value or ""}

        return handler

    # ----- shared checks ---------------------------------------------------------------------

    def chat(self, params: Params) -> Chat:
        """The target chat: Telegram's errors for a missing, unknown or blocked one."""
        raw = params.text("chat_id")
        if raw is None or raw.strip() == "":
            raise bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except ValueError as error:
            raise bad_request("chat not found") from error
        with self.state.lock:
            chat = self.state.chats.get(chat_id)
            if chat is None:
                raise bad_request("chat not found")
            if chat.blocked:
                raise forbidden("bot was blocked by the user")
            return chat

    def reply_to(self, params: Params, chat: Chat) -> JSON:
        """`reply_parameters` / `reply_to_message_id`: the quoted message, as Telegram adds it."""
        reply = params.json("reply_parameters", "can't parse reply parameters JSON object")
        message_id = params.integer("reply_to_message_id")
        allow = params.boolean("allow_sending_without_reply")
        if isinstance(reply, dict):
            message_id = int(reply.get("message_id", 0)) or None
            allow = allow or bool(reply.get("allow_sending_without_reply"))
        if message_id is None:
            return {}
        found = self.state.find_message(chat.user.id, message_id)
        if found is None or message_id in found[0].deleted_ids:
            if allow:
                return {}
            raise bad_request("message to be replied not found")
        quoted = copy.deepcopy(found[0].messages[found[1]])
        return {"reply_to_message": quoted}

    def photo_source(self, source: Upload | str | None) -> StoredPhoto:
        if isinstance(source, Upload):
            return self.state.files.add_photo(source.data, upload_name=source.filename)
        if not source:
            raise bad_request("there is no photo in the request")
        if "://" in source or "." in source:
            raise bad_request("failed to get HTTP URL content")
        self.state.files.resolve(source, "photo")
        photo = self.state.files.photo(source)
        assert photo is not None
        return photo

    def document_source(self, source: Upload | str | None) -> StoredFile:
        if isinstance(source, Upload):
            generic = source.content_type == "application/octet-stream"
            mime = None if generic else source.content_type
            return self.state.files.add_file(
                "document", source.data, file_name=source.filename, mime_type=mime
            )
        if not source:
            raise bad_request("there is no document in the request")
        if "://" in source or "." in source:
            raise bad_request("failed to get HTTP URL content")
        return self.state.files.resolve(source, "document")

    def _send(
        self,
        chat: Chat,
        method: str,
        bodies: list[JSON],
        names: list[str | None],
        params: Params,
    ) -> list[JSON]:
        extra = self.reply_to(params, chat)
        if params.boolean("protect_content"):
            extra["has_protected_content"] = True
        for body in bodies:
            body.update(copy.deepcopy(extra))
        entry = self.state.add_entry(chat, from_bot=True, method=method, bodies=bodies, names=names)
        with self.state.lock:
            return copy.deepcopy(entry.messages)

    # ----- sending ---------------------------------------------------------------------------

    def send_message(self, params: Params) -> JSON:
        chat = self.chat(params)
        text, entities = checks.message_text(params)
        body: JSON = {"text": text}
        if entities:
            body["entities"] = entities
        markup = checks.reply_markup(params)
        if markup:
            body["reply_markup"] = markup
        return self._send(chat, "sendMessage", [body], [None], params)[0]

    def send_photo(self, params: Params) -> JSON:
        chat = self.chat(params)
        body = checks.caption(params)
        markup = checks.reply_markup(params)
        photo = self.photo_source(checks.input_file(params, "photo"))
        body["photo"] = photo.photo_sizes()
        if params.boolean("has_spoiler"):
            body["has_media_spoiler"] = True
        if markup:
            body["reply_markup"] = markup
        return self._send(chat, "sendPhoto", [body], [photo.upload_name], params)[0]

    def send_document(self, params: Params) -> JSON:
        chat = self.chat(params)
        body = checks.caption(params)
        markup = checks.reply_markup(params)
        document = self.document_source(checks.input_file(params, "document"))
        body["document"] = document.document()
        if markup:
            body["reply_markup"] = markup
        return self._send(chat, "sendDocument", [body], [document.file_name], params)[0]

    def send_media_group(self, params: Params) -> list[JSON]:
        """An album: 2-10 photos or 2-10 documents, each its own message, one media_group_id.

        Telegram documents 2-10 items; its server actually sends a lone item as a plain message.
        With `strict_albums` (the default) the stand-in holds the bot to the documented contract
        and refuses one item, with a description that says it is the stand-in's rule.
        """
        chat = self.chat(params)
        if not params.has("media"):
            raise bad_request('parameter "media" is required')
        items = params.json("media", "can't parse media JSON object")
        if not isinstance(items, list):
            raise bad_request("can't parse media JSON object")
        if not items:
            raise bad_request("there are no messages to send")
        if len(items) > MAX_ALBUM:
            raise bad_request("too many messages to send as an album")
        if len(items) == 1 and self.strict_albums:
            raise bad_request(
                "media group must include 2-10 items (stand-in's check of the documented "
                "limit; send one photo with sendPhoto)"
            )
        kinds = {str(item.get("type")) if isinstance(item, dict) else "" for item in items}
        for kind in kinds:
            if kind not in ("photo", "document"):
                raise bad_request(f'can\'t parse InputMedia: type "{kind}" is not supported here')
        if len(kinds) > 1:
            raise bad_request("document can't be mixed with other media types")
        group_id = str(secrets.randbits(62))
        bodies: list[JSON] = []
        names: list[str | None] = []
        for item in items:
            item_params = Params(values=dict(item), files=params.files)
            caption = checks.caption(item_params)
            source = checks.input_file(item_params, "media")
            body: JSON = {"media_group_id": group_id, **caption}
            if item["type"] == "photo":
                photo = self.photo_source(source)
                body["photo"] = photo.photo_sizes()
                if item.get("has_spoiler"):
                    body["has_media_spoiler"] = True
                names.append(photo.upload_name)
            else:
                document = self.document_source(source)
                body["document"] = document.document()
                names.append(document.file_name)
            bodies.append(body)
        return self._send(chat, "sendMediaGroup", bodies, names, params)

    def send_chat_action(self, params: Params) -> bool:
        chat = self.chat(params)
        action = params.text("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        with self.state.lock:
            chat.typing_until = time.monotonic() + CHAT_ACTION_SECONDS
        self.state.changed()
        return True

    # ----- editing and deleting --------------------------------------------------------------

    def _editable(self, params: Params) -> tuple[Entry, JSON]:
        if params.has("inline_message_id"):
            raise bad_request("stand-in: inline messages are not supported")
        chat = self.chat(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        found = self.state.find_message(chat.user.id, message_id)
        if found is None or message_id in found[0].deleted_ids:
            raise bad_request("message to edit not found")
        entry, index = found
        if not entry.from_bot:
            raise bad_request("message can't be edited")
        return entry, entry.messages[index]

    def _apply_edit(self, entry: Entry, message: JSON, changes: JSON) -> JSON:
        """Replace the given fields (None removes one), or 400 "not modified" when identical."""
        with self.state.lock:
            if all(message.get(name) == value for name, value in changes.items()):
                raise bad_request(NOT_MODIFIED)
            for name, value in changes.items():
                if value is None:
                    message.pop(name, None)
                else:
                    message[name] = value
            message["edit_date"] = int(time.time())
            self.state.touch_entry(entry, edited=True)
            return copy.deepcopy(message)

    def edit_message_text(self, params: Params) -> JSON:
        entry, message = self._editable(params)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        text, entities = checks.message_text(params)
        changes = {
            "text": text,
            "entities": entities or None,
            "reply_markup": checks.reply_markup(params),
        }
        return self._apply_edit(entry, message, changes)

    def edit_message_caption(self, params: Params) -> JSON:
        entry, message = self._editable(params)
        if "photo" not in message and "document" not in message:
            raise bad_request("there is no caption in the message to edit")
        caption = checks.caption(params)
        changes = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities"),
            "reply_markup": checks.reply_markup(params),
        }
        return self._apply_edit(entry, message, changes)

    def edit_message_reply_markup(self, params: Params) -> JSON:
        entry, message = self._editable(params)
        return self._apply_edit(entry, message, {"reply_markup": checks.reply_markup(params)})

    def _delete(self, chat: Chat, message_id: int) -> bool:
        found = self.state.find_message(chat.user.id, message_id)
        if found is None or message_id in found[0].deleted_ids:
            return False
        with self.state.lock:
            found[0].deleted_ids.add(message_id)
        self.state.touch_entry(found[0], edited=False)
        return True

    def delete_message(self, params: Params) -> bool:
        chat = self.chat(params)
        message_id = params.integer("message_id")
        if message_id is None:
            raise bad_request("message identifier is not specified")
        if not self._delete(chat, message_id):
            raise bad_request("message to delete not found")
        return True

    def delete_messages(self, params: Params) -> bool:
        chat = self.chat(params)
        ids = params.json("message_ids", "can't parse message identifiers JSON object")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise bad_request("message identifiers are not specified")
        for message_id in ids:
            self._delete(chat, int(message_id))
        return True

    # ----- callbacks and files ---------------------------------------------------------------

    def answer_callback_query(self, params: Params) -> bool:
        callback_id = params.text("callback_query_id") or ""
        text = params.text("text")
        if text is not None and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        with self.state.lock:
            pending = self.state.callbacks.get(callback_id)
            expired = (
                pending is None
                or pending.answer is not None
                or time.monotonic() - pending.created > self.state.callback_ttl
            )
            if pending is None or expired:
                raise bad_request(QUERY_TOO_OLD)
            pending.answer = CallbackAnswer(
                callback_id=callback_id,
                text=text or None,
                show_alert=params.boolean("show_alert"),
                url=params.text("url"),
                cache_time=params.integer("cache_time") or 0,
                answered_at=time.monotonic(),
            )
        self.state.changed()
        return True

    def get_file(self, params: Params) -> JSON:
        file_id = params.text("file_id") or ""
        stored = self.state.files.get(file_id)
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": self.state.files.assign_path(stored),
        }
