"""The user's side over HTTP: JSON endpoints under `/_user/` for the web chat (and scripts).

They mirror `StandInClient`. A user is given as `{"id": ..., "first_name": ...,
"username": ..., "language_code": ...}` (only `id` is required); the web chat sends its fixed
demo user with the language the visitor picked. No authentication: the server binds to
loopback only.

    GET  /_user/info                          -> {"bot": {...}, "user": {...}}
    GET  /_user/commands?language_code=ru&chat_id=N -> [{"command", "description"}, ...]
    POST /_user/send_text      {"user", "text"}                     -> {"message_id"}
    POST /_user/send_photo     multipart: user (JSON), caption, photo (file) -> {"message_id"}
    POST /_user/send_document  multipart: user (JSON), caption, document (file) -> {"message_id"}
    POST /_user/send_sticker   {"user"} ; POST /_user/send_voice {"user"}  -> {"message_id"}
    POST /_user/press_button   {"user", "message_id", "callback_data"} -> {"callback_id"}
    GET  /_user/callback_answer?id=...&timeout=10 -> {"answer": {...} | null}
    GET  /_user/updates?chat_id=...&after=SEQ&timeout=25&typing=0
         -> {"seq", "typing", "entries": [...]}: long poll for entries changed after SEQ
    GET  /_user/file/{file_id}[?download=1]   -> the file's bytes
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from bot.playground.files import client_compressed_jpeg
from bot.playground.models import JSON, Entry, FakeUser

if TYPE_CHECKING:
    from bot.playground.standin import BotApiStandIn

MAX_POLL_SECONDS = 60.0
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UserApiError(Exception):
    """A request the user side cannot act on; answered with 400 and a JSON error."""


def add_routes(app: web.Application, stand_in: BotApiStandIn) -> None:
    api = _UserApi(stand_in)
    routes: list[tuple[str, str, Route]] = [
        ("GET", "/_user/info", api.info),
        ("GET", "/_user/commands", api.commands),
        ("POST", "/_user/send_text", api.send_text),
        ("POST", "/_user/send_photo", api.send_photo),
        ("POST", "/_user/send_document", api.send_document),
        ("POST", "/_user/send_sticker", api.send_sticker),
        ("POST", "/_user/send_voice", api.send_voice),
        ("POST", "/_user/press_button", api.press_button),
        ("GET", "/_user/callback_answer", api.callback_answer),
        ("GET", "/_user/updates", api.updates),
        ("GET", "/_user/file/{file_id}", api.file),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _json_errors(handler))


def _json_errors(handler: Route) -> Route:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (UserApiError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        except KeyError as error:
            return web.json_response({"error": str(error.args[0])}, status=404)

    return wrapped


def parse_user(raw: Any, fallback: FakeUser) -> FakeUser:
    """A FakeUser from JSON (a dict, or a JSON string in a form field)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else {}
        except ValueError as error:
            raise UserApiError("user must be a JSON object") from error
    if raw is None:
        return fallback
    if not isinstance(raw, dict) or "id" not in raw:
        raise UserApiError('user must be a JSON object with an "id"')
    try:
        user_id = int(raw["id"])
    except (TypeError, ValueError) as error:
        raise UserApiError("user id must be an integer") from error
    if user_id <= 0:
        raise UserApiError("user id must be positive")
    username = raw.get("username")
    return FakeUser(
        id=user_id,
        first_name=str(raw.get("first_name") or fallback.first_name)[:64],
        username=str(username)[:32] if username else None,
        language_code=str(raw.get("language_code") or "en")[:8],
    )


def entry_json(entry: Entry) -> JSON:
    """One chat entry as the web chat draws it."""
    items: list[JSON] = []
    for message, name in zip(entry.messages, entry.names, strict=True):
        message_id = int(message["message_id"])
        item: JSON = {"message_id": message_id, "deleted": message_id in entry.deleted_ids}
        for key in ("text", "entities", "caption", "caption_entities"):
            if key in message:
                item[key] = message[key]
        if message.get("photo"):
            sizes = message["photo"]
            item["photo"] = {
                "file_id": sizes[-1]["file_id"],
                "url": f"/_user/file/{sizes[-1]['file_id']}",
                "thumb_url": f"/_user/file/{sizes[0]['file_id']}",
                "width": sizes[-1]["width"],
                "height": sizes[-1]["height"],
                "name": name,
            }
        if message.get("document"):
            document = message["document"]
            item["document"] = {
                "file_name": document.get("file_name") or "file",
                "file_size": document.get("file_size"),
                "mime_type": document.get("mime_type"),
                "url": f"/_user/file/{document['file_id']}?download=1",
            }
        if message.get("sticker"):
            sticker = message["sticker"]
            item["sticker"] = {
                "emoji": sticker.get("emoji"),
                "url": f"/_user/file/{sticker['file_id']}",
            }
        if message.get("voice"):
            item["voice"] = {"duration": message["voice"].get("duration")}
        items.append(item)
    first = entry.messages[0]
    return {
        "key": entry.message_ids[0],
        "seq": entry.seq,
        "from": "bot" if entry.from_bot else "user",
        "method": entry.method,
        "date": first["date"],
        "edits": entry.edits,
        "deleted": entry.deleted,
        "media_group_id": first.get("media_group_id"),
        "reply_markup": entry.messages[-1].get("reply_markup"),
        "items": items,
    }


class _UserApi:
    def __init__(self, stand_in: BotApiStandIn) -> None:
        self.stand_in = stand_in
        self.state = stand_in.state
        self.client = stand_in.client

    def _user(self, raw: Any) -> FakeUser:
        return parse_user(raw, self.stand_in.web_user)

    @staticmethod
    async def _json_body(request: web.Request) -> JSON:
        try:
            body = await request.json()
        except ValueError as error:
            raise UserApiError("expected a JSON body") from error
        if not isinstance(body, dict):
            raise UserApiError("expected a JSON object")
        return body

    async def info(self, _: web.Request) -> web.StreamResponse:
        bot = self.state.bot_user
        user = dataclasses.asdict(self.stand_in.web_user)
        return web.json_response(
            {"bot": {"first_name": bot["first_name"], "username": bot["username"]}, "user": user}
        )

    async def commands(self, request: web.Request) -> web.StreamResponse:
        language = request.query.get("language_code", "")
        chat = request.query.get("chat_id", "")
        chat_id = int(chat) if chat.lstrip("-").isdigit() else None
        return web.json_response(self.client.commands(language, chat_id))

    async def send_text(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        text = str(body.get("text", ""))
        if not text.strip():
            raise UserApiError("text must not be empty")
        message_id = self.client.send_text(self._user(body.get("user")), text)
        return web.json_response({"message_id": message_id})

    async def _form(self, request: web.Request, file_field: str) -> tuple[FakeUser, JSON, Any]:
        form = await request.post()
        upload = form.get(file_field)
        if not isinstance(upload, web.FileField):
            raise UserApiError(f"multipart field {file_field!r} with a file is required")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return self._user(fields.get("user")), fields, upload

    async def send_photo(self, request: web.Request) -> web.StreamResponse:
        user, fields, upload = await self._form(request, "photo")
        data = client_compressed_jpeg(upload.file.read())
        caption = fields.get("caption") or None
        message_id = self.client.send_photo(user, data, caption, upload.filename)
        return web.json_response({"message_id": message_id})

    async def send_document(self, request: web.Request) -> web.StreamResponse:
        user, fields, upload = await self._form(request, "document")
        message_id = self.client.send_document(
            user,
            upload.file.read(),
            upload.filename or "file",
            upload.content_type,
            fields.get("caption") or None,
        )
        return web.json_response({"message_id": message_id})

    async def send_sticker(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        message_id = self.client.send_sticker(self._user(body.get("user")))
        return web.json_response({"message_id": message_id})

    async def send_voice(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        message_id = self.client.send_voice(self._user(body.get("user")))
        return web.json_response({"message_id": message_id})

    async def press_button(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        try:
            message_id = int(body["message_id"])
            data = str(body["callback_data"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserApiError("message_id and callback_data are required") from error
        callback_id = self.client.press_button(self._user(body.get("user")), message_id, data)
        return web.json_response({"callback_id": callback_id})

    async def callback_answer(self, request: web.Request) -> web.StreamResponse:
        callback_id = request.query.get("id", "")
        timeout = _bounded(request.query.get("timeout"), 10.0)
        self.state.callback_answer(callback_id)  # KeyError -> 404 for an unknown id
        answer = await self.stand_in.callback_answer(callback_id, timeout)
        return web.json_response({"answer": None if answer is None else dataclasses.asdict(answer)})

    async def updates(self, request: web.Request) -> web.StreamResponse:
        """Long poll: entries of the chat changed after `after`, or a change of typing state."""
        try:
            chat_id = int(request.query["chat_id"])
            after = int(request.query.get("after", "0"))
        except (KeyError, ValueError) as error:
            raise UserApiError("chat_id (and after) must be integers") from error
        timeout = _bounded(request.query.get("timeout"), 25.0)
        shown_typing = request.query.get("typing", "0") == "1"

        def ready() -> list[Entry] | None:
            entries = self.state.entries_after(chat_id, after)
            if entries or self.client.typing(chat_id) != shown_typing or self.state.stopping:
                return entries
            return None

        entries = await self.state.wait_async(ready, timeout, poll=0.25) or []
        with self.state.lock:
            payload = {
                "seq": max([after, *(entry.seq for entry in entries)]),
                "typing": self.client.typing(chat_id),
                "entries": [entry_json(entry) for entry in entries],
                "now": time.time(),
            }
        return web.json_response(payload)

    async def file(self, request: web.Request) -> web.StreamResponse:
        stored = self.state.file(request.match_info["file_id"])
        response = web.Response(body=stored.data, content_type=stored.mime_type)
        if request.query.get("download") == "1":
            name = stored.file_name or "file"
            fallback = name.encode("ascii", "replace").decode().replace('"', "").replace("?", "_")
            response.headers["Content-Disposition"] = (
                f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"
            )
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response


def _bounded(raw: str | None, default: float) -> float:
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = default
    return min(max(value, 0.0), MAX_POLL_SECONDS)
