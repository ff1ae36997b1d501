"""Request parameters as Telegram reads them, whatever the body encoding.

python-telegram-bot sends form fields (urlencoded, or multipart when a file goes along) whose
non-string values are JSON-encoded: `reply_markup`, `media`, `allowed_updates`, `commands`,
even booleans ("true") and integers ("42"). Other clients send a JSON body with native values.
`Params` hides the difference: every accessor takes either.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.playground.errors import bad_request

# Parameters whose value is JSON even in form bodies: decoded for the call log.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "media",
        "allowed_updates",
        "commands",
        "scope",
        "entities",
        "caption_entities",
        "reply_parameters",
        "link_preview_options",
        "menu_button",
        "message_ids",
    }
)


@dataclass(frozen=True)
class Upload:
    """A multipart file part."""

    filename: str | None
    content_type: str
    data: bytes


def _always_connected() -> bool:
    return True


@dataclass
class Params:
    values: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    # Whether the client still waits for the answer (a long poll may outlive its client).
    connected: Callable[[], bool] = _always_connected

    def has(self, name: str) -> bool:
        return name in self.values or name in self.files

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)

    def integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(float(str(value)))
        except ValueError as error:
            raise bad_request(f"invalid {name} specified") from error

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as error:
            raise bad_request(f"invalid {name} specified") from error

    def boolean(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in {"true", "1", "yes"}

    def json(self, name: str, error: str) -> Any:
        """A JSON-valued parameter, decoded; `error` is Telegram's complaint when it is not JSON."""
        value = self.values.get(name)
        if isinstance(value, str):
            if value == "":
                return None
            try:
                return json.loads(value)
            except ValueError as exc:
                raise bad_request(error) from exc
        return value

    def for_log(self) -> dict[str, Any]:
        """Parameters for the call log: JSON fields decoded, uploads summarised."""
        logged: dict[str, Any] = {}
        for name, value in self.values.items():
            if name in JSON_FIELDS and isinstance(value, str):
                try:
                    logged[name] = json.loads(value)
                    continue
                except ValueError:
                    pass
            logged[name] = value
        for name, upload in self.files.items():
            logged[name] = {"upload": upload.filename, "size": len(upload.data)}
        return logged


async def read_params(request: web.Request) -> Params:
    """Query string plus the body (urlencoded, multipart or JSON)."""

    def connected() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    params = Params(values=dict(request.query), connected=connected)
    if not request.body_exists:
        return params
    content_type = request.content_type
    if content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as error:
            raise bad_request("can't parse JSON object") from error
        if not isinstance(body, dict):
            raise bad_request("JSON object expected")
        params.values.update(body)
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                params.files[name] = Upload(value.filename, value.content_type, value.file.read())
                value.file.close()
            elif isinstance(value, (bytes, bytearray)):
                params.values[name] = bytes(value).decode("utf-8", "replace")
            else:
                params.values[name] = value
    return params
