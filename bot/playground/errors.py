"""Telegram's error envelope and the descriptions the stand-in answers with.

The bot (and python-telegram-bot) decide what to do from the HTTP status and, in places, from
the description text ("message is not modified" is routinely ignored, "retry after" is honoured),
so the texts here are Telegram's own wording, not paraphrases. Where Telegram has no error for
something the stand-in still refuses, the text says so ("stand-in: ...").
"""

from __future__ import annotations

from typing import Any

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
WRONG_FILE_ID = "wrong file identifier/HTTP URL specified"
CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


class ApiError(Exception):
    """A Bot API failure, rendered as Telegram's `{"ok": false, ...}` envelope."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    """400 with Telegram's "Bad Request: " prefix (PTB raises `telegram.error.BadRequest`)."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(retry_after: int) -> ApiError:
    """429 with `parameters.retry_after` (PTB raises `telegram.error.RetryAfter`)."""
    return ApiError(
        429,
        f"Too Many Requests: retry after {retry_after}",
        {"retry_after": retry_after},
    )


def unauthorized() -> ApiError:
    """401 for a token the stand-in was not started with (PTB raises `InvalidToken`)."""
    return ApiError(401, "Unauthorized")


def not_found() -> ApiError:
    """404, Telegram's answer to an unknown method."""
    return ApiError(404, "Not Found")


def forbidden(detail: str) -> ApiError:
    """403 with Telegram's "Forbidden: " prefix (PTB raises `telegram.error.Forbidden`)."""
    return ApiError(403, f"Forbidden: {detail}")
