"""Callback data of the inline buttons: compact, at most 64 bytes, and signed.

Telegram hands back whatever a button carries, and a client can send any callback data it
likes for a message it sees, so the data is treated as untrusted input: every button's payload
is signed with an HMAC over the payload *and the id of the user it was made for*. A button
pressed by somebody else (a forwarded message, a group chat, a hand-made request) or altered
in any field (another query, another rank, another vote) fails verification before it reaches
the database; storage's owner check (`NotQueryOwnerError`) stands behind it as a second line.

Wire format (ASCII, fields separated by "."):

    v.<query>.<page_start>.<page_len>.<rank>.<target>.<sig>   vote button
    m.<query>.<page_start>.<next_rank>.<sig>                 "More ▶" (page: its keyboard)
    r.<query>.<rank>.<sig>                                   🚫 report: "this shows a child"
    l.<language>                                             language choice (unsigned)

Numbers are base 36; `target` is the vote the press sets: "u" (+1), "d" (-1) or "n" (withdraw),
so a retried or duplicated callback is idempotent (storage's `set_vote`). The signature is the
first 12 bytes of HMAC-SHA256, base64url without padding (16 chars): 96 bits, far beyond what
guessing through Telegram's rate limits could reach. With 64-bit ids the longest vote payload
is 52 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final, Literal

from bot.i18n import LANGUAGES, Language

MAX_CALLBACK_BYTES: Final = 64
SIGNATURE_BYTES: Final = 12
_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"

VoteTarget = Literal[1, -1] | None
_TARGET_CODES: Final[dict[VoteTarget, str]] = {1: "u", -1: "d", None: "n"}
_CODE_TARGETS: Final[dict[str, VoteTarget]] = {code: t for t, code in _TARGET_CODES.items()}


class CallbackDataError(ValueError):
    """Callback data that is not ours: malformed, or signed with another key (expired)."""


class ForgedCallbackError(CallbackDataError):
    """Well-formed data whose signature does not match this user: not theirs, or altered."""


@dataclass(frozen=True)
class VoteButton:
    """A 👍/👎 press on photo `rank` of a query; the page tells which keyboard to redraw."""

    query_id: int
    page_start: int
    page_len: int
    rank: int
    target: VoteTarget


@dataclass(frozen=True)
class MoreButton:
    """"More ▶" under the album of ranks `page_start`..`next_rank - 1`: show what follows."""

    query_id: int
    page_start: int
    next_rank: int


@dataclass(frozen=True)
class ReportButton:
    """🚫 on photo `rank` of a query: the user reports that it shows a child."""

    query_id: int
    rank: int


@dataclass(frozen=True)
class LanguageButton:
    language: Language


Button = VoteButton | MoreButton | ReportButton | LanguageButton


def to_base36(number: int) -> str:
    if number < 0:
        raise ValueError(f"callback numbers are non-negative, not {number}")
    if number == 0:
        return "0"
    digits = []
    while number:
        number, remainder = divmod(number, 36)
        digits.append(_ALPHABET[remainder])
    return "".join(reversed(digits))


def from_base36(text: str) -> int:
    if not text or len(text) > 13 or any(c not in _ALPHABET for c in text):
        raise CallbackDataError(f"not a callback number: {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise CallbackDataError(f"non-canonical callback number: {text!r}")
    return int(text, 36)


class CallbackCodec:
    """Encodes buttons for one user and decodes what comes back, checking signatures."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the callback signing key must be at least 16 bytes")
        self._key = key

    def _sign(self, user_id: int, payload: str) -> str:
        message = f"{user_id}|{payload}".encode("ascii")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def encode(self, button: Button, *, user_id: int) -> str:
        """The callback data for `button` shown to `user_id` (always ≤ 64 bytes)."""
        if isinstance(button, LanguageButton):
            data = f"l.{button.language}"
        else:
            if isinstance(button, VoteButton):
                fields = [
                    "v",
                    to_base36(button.query_id),
                    to_base36(button.page_start),
                    to_base36(button.page_len),
                    to_base36(button.rank),
                    _TARGET_CODES[button.target],
                ]
            elif isinstance(button, ReportButton):
                fields = ["r", to_base36(button.query_id), to_base36(button.rank)]
            else:
                fields = [
                    "m",
                    to_base36(button.query_id),
                    to_base36(button.page_start),
                    to_base36(button.next_rank),
                ]
            payload = ".".join(fields)
            data = f"{payload}.{self._sign(user_id, payload)}"
        if len(data.encode("ascii")) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {data!r}")
        return data

    def decode(self, data: str, *, user_id: int) -> Button:
        """The button behind `data` pressed by `user_id`.

        Raises `ForgedCallbackError` when the signature does not match this user (another
        user's button, or altered fields) and `CallbackDataError` for anything malformed.
        """
        if len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:
            raise CallbackDataError("callback data too long")
        fields = data.split(".")
        kind = fields[0]
        if kind == "l" and len(fields) == 2 and fields[1] in LANGUAGES:
            language: Language = "ru" if fields[1] == "ru" else "en"
            return LanguageButton(language)
        if (kind, len(fields)) not in (("v", 7), ("m", 5), ("r", 4)):
            raise CallbackDataError(f"unknown callback data {data[:20]!r}")
        payload, signature = ".".join(fields[:-1]), fields[-1]
        if not hmac.compare_digest(signature, self._sign(user_id, payload)):
            raise ForgedCallbackError("callback signature does not match this user")
        numbers = fields[1:-2] if kind == "v" else fields[1:-1]
        values = [from_base36(part) for part in numbers]
        if kind == "r":
            query_id, rank = values
            if rank < 1:
                raise CallbackDataError("report rank out of range")
            return ReportButton(query_id, rank)
        if kind == "m":
            query_id, page_start, next_rank = values
            if not 1 <= page_start < next_rank:
                raise CallbackDataError("'more' page out of order")
            return MoreButton(query_id, page_start, next_rank)
        target_code = fields[5]
        if target_code not in _CODE_TARGETS:
            raise CallbackDataError(f"unknown vote target {target_code!r}")
        query_id, page_start, page_len, rank = values
        if page_start < 1 or not page_start <= rank < page_start + page_len:
            raise CallbackDataError("vote rank outside its page")
        return VoteButton(query_id, page_start, page_len, rank, _CODE_TARGETS[target_code])
