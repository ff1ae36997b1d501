"""`get_query`, the small storage helper "More" needs, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.storage import TelegramUser, UnknownQueryError, get_query, log_query


def test_get_query(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        logged = log_query(session, user=TelegramUser(5, "u", "ru"), chat_id=5, text="кот",
                           kind="text", language="ru", model_version="m@1", latency_ms=3.0,
                           hits=[("a.jpg", 0.9)])
        photo = log_query(session, user=TelegramUser(5), chat_id=5, text="FILEID",
                          kind="photo", model_version="m@1", latency_ms=3.0)
    with sessions.begin() as session:
        info = get_query(session, logged.id)
        assert (info.user_id, info.kind, info.text, info.language, info.refused) == (
            5, "text", "кот", "ru", False)
        assert get_query(session, photo.id).kind == "photo"
        with pytest.raises(UnknownQueryError):
            get_query(session, 10**9)
