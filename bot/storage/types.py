"""Column types whose behaviour must not depend on the database.

SQLite has no time-zone-aware timestamp: SQLAlchemy stores the wall-clock digits and gives back
naive datetimes, while PostgreSQL's `timestamptz` converts naive values with the session's time
zone. Storing UTC everywhere and always handing back aware UTC datetimes makes exports, `--since`
filters and tests identical on both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on the Python side, whatever the database stores.

    Naive datetimes are refused on the way in: they are a programmer error (a local time
    silently stored as UTC would shift every export filter by the server's offset).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
