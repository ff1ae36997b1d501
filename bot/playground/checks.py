"""Parameter checks shared by the sending and editing methods, with Telegram's errors.

Formatted text goes through `textparse` (as Telegram parses markup), captions and texts are
held to Telegram's lengths, inline keyboards to its button rules (callback data of 1-64 bytes),
and file parameters are found wherever PTB puts them (a part of their own, or attach://).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from bot.playground import textparse
from bot.playground.errors import bad_request
from bot.playground.models import JSON
from bot.playground.params import Params, Upload

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA_BYTES = 64
BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def formatted(
    params: Params, text_name: str, entities_name: str, mode_name: str = "parse_mode"
) -> tuple[str, list[JSON]]:
    """Plain text and entities of a text/caption parameter, as Telegram stores them."""
    raw = params.text(text_name) or ""
    entities = params.json(entities_name, f"can't parse {entities_name} JSON object")
    try:
        return textparse.parse(raw, params.text(mode_name), entities)
    except textparse.EntityParseError as error:
        raise bad_request(f"can't parse entities: {error}") from error


def message_text(params: Params) -> tuple[str, list[JSON]]:
    """sendMessage/editMessageText's `text`: non-empty and at most 4096 characters."""
    text, entities = formatted(params, "text", "entities")
    if not text:
        raise bad_request("message text is empty")
    if len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    return text, entities


def caption(params: Params) -> JSON:
    """The caption fields of a media message (empty when there is no caption)."""
    text, entities = formatted(params, "caption", "caption_entities")
    if len(text) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    body: JSON = {}
    if text:
        body["caption"] = text
        if entities:
            body["caption_entities"] = entities
    return body


def reply_markup(params: Params) -> JSON | None:
    """The inline keyboard to show, validated; None when there is none.

    Reply keyboards (keyboard/remove_keyboard/force_reply) are accepted and not shown:
    Telegram's Message carries only inline keyboards either.
    """
    markup = params.json("reply_markup", "can't parse reply keyboard markup JSON object")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("object expected as reply markup")
    if "inline_keyboard" not in markup:
        return None
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    cleaned: list[list[JSON]] = []
    for row in rows:
        for button in row:
            check_button(button)
        if row:
            cleaned.append(copy.deepcopy(row))
    return {"inline_keyboard": cleaned} if cleaned else None


def check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise bad_request(
            "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        )
    if not isinstance(button.get("text"), str):
        raise bad_request("can't parse inline keyboard button: Text must be a String")
    if not any(action in button for action in BUTTON_ACTIONS):
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        size = len(data.encode("utf-8")) if isinstance(data, str) else 0
        if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button and not re.match(r"(https?|tg)://\S+", str(button["url"])):
        raise bad_request("BUTTON_URL_INVALID")


def input_file(params: Params, name: str) -> Upload | str | None:
    """A file parameter: an upload in the part named like it, attach://part, or an id/URL."""
    if name in params.files:
        return params.files[name]
    value = params.text(name)
    if value is not None and value.startswith("attach://"):
        upload = params.files.get(value.removeprefix("attach://"))
        if upload is None:
            raise bad_request(f'can\'t find attached file "{value}"')
        return upload
    return value
