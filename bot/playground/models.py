"""The stand-in's data types: the public ones tests read, and the chat records behind them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user talking to the bot in a private chat (chat id == user id)."""

    id: int
    first_name: str = "Test"
    username: str | None = None
    language_code: str = "en"

    def user_json(self) -> JSON:
        body: JSON = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            body["username"] = self.username
        if self.language_code:
            body["language_code"] = self.language_code
        return body

    def chat_json(self) -> JSON:
        body: JSON = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.username:
            body["username"] = self.username
        return body


@dataclass(frozen=True)
class BotMessage:
    """What the bot sent with one call (one album == one BotMessage), as it looks now.

    `message_id` is the first message's id (an album's items have consecutive ids, all listed in
    `message_ids`). `text` and `caption` are plain text, markup parsed away, with `entities`
    (text) describing the formatting. `photo_file_ids` are the largest sizes in album order;
    `photo_names` the file names they were first uploaded under (None for photos the stand-in
    did not see uploaded), which lets tests tell which picture was sent. `reply_markup` is the
    current inline keyboard, after edits, or None. `seq` orders changes (the web chat polls by
    it); `sent_at` is `time.monotonic()` when the call that sent it completed.
    """

    message_id: int
    chat_id: int
    method: str
    text: str | None
    caption: str | None
    photo_file_ids: list[str]
    media_group_id: str | None
    reply_markup: JSON | None
    document_name: str | None
    document_file_id: str | None
    edits: int
    date: int
    message_ids: list[int]
    captions: list[str | None]
    photo_names: list[str | None]
    entities: list[JSON]
    deleted: bool
    seq: int
    sent_at: float

    @property
    def buttons(self) -> list[list[tuple[str, str | None]]]:
        """The inline keyboard as rows of (text, callback_data)."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [[(b.get("text", ""), b.get("callback_data")) for b in row] for row in rows]

    @property
    def callback_data(self) -> list[str]:
        """Every button's callback_data, row by row."""
        return [data for row in self.buttons for _, data in row if data is not None]


@dataclass(frozen=True)
class CallbackAnswer:
    """The bot's answerCallbackQuery for one press."""

    callback_id: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int
    answered_at: float


@dataclass(frozen=True)
class ApiCall:
    """One Bot API request the bot made: for assertions and benchmarks.

    `params` are the decoded parameters (JSON fields parsed, uploads shown as
    `{"upload": filename, "size": n}`); `time` is `time.monotonic()` on arrival.
    """

    method: str
    params: JSON
    time: float
    duration: float
    status: int
    description: str | None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Entry:
    """One send (one or several Telegram messages) in a chat, by the user or by the bot."""

    seq: int
    chat_id: int
    from_bot: bool
    method: str
    messages: list[JSON]
    names: list[str | None]
    sent_at: float
    edits: int = 0
    deleted_ids: set[int] = field(default_factory=set)
    delivered_at: float | None = None

    @property
    def message_ids(self) -> list[int]:
        return [int(message["message_id"]) for message in self.messages]

    @property
    def deleted(self) -> bool:
        return len(self.deleted_ids) == len(self.messages)


@dataclass
class Chat:
    """A private chat with one fake user."""

    user: FakeUser
    entries: list[Entry] = field(default_factory=list)
    by_message_id: dict[int, tuple[Entry, int]] = field(default_factory=dict)
    next_message_id: int = 1
    typing_until: float = 0.0
    blocked: bool = False
    chat_instance: str = field(default_factory=lambda: str(secrets.randbits(62)))


@dataclass
class PendingCallback:
    """A button press the bot has not answered yet (or has: `answer`)."""

    callback_id: str
    chat_id: int
    message_id: int
    created: float
    answer: CallbackAnswer | None = None
