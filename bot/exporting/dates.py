"""`--since` / `--until` as admins type them, turned into an exact UTC window.

A plain date means whole days: `--since 2024-05-01 --until 2024-05-31` covers May 1 00:00 UTC
up to and including all of May 31 (the window's end is exclusive at June 1 00:00). A date with
a time is an exact instant (UTC unless it carries an offset) and `--until` excludes it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

FORMAT_HINT = "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"


class DateArgumentError(ValueError):
    """A malformed or inconsistent date argument; the message is meant for the user."""


def parse_bound(text: str, *, option: str, end: bool) -> datetime:
    """Parse one bound; `end=True` makes a plain date include its whole day."""
    value = text.strip()
    try:
        if _DATE_ONLY.match(value):
            day = date.fromisoformat(value)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", value):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise DateArgumentError(f"{option} {text!r} is not a date: {FORMAT_HINT}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """Both bounds, checked to leave a non-empty window."""
    start = parse_bound(since, option="--since", end=False) if since is not None else None
    stop = parse_bound(until, option="--until", end=True) if until is not None else None
    if start is not None and stop is not None and start >= stop:
        raise DateArgumentError(f"--since {since} is not before --until {until}")
    return start, stop
