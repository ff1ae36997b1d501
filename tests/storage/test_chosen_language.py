"""`set_chosen_language` / `get_chosen_language` on a real database (SQLite, and PostgreSQL
when configured): the user row is made when missing, choosing is idempotent, and the choice
is independent of what `upsert_user` keeps refreshing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bot.storage import (
    TelegramUser,
    get_chosen_language,
    log_query,
    set_chosen_language,
    upsert_user,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ANN = TelegramUser(id=5_000_000_001, username="ann", language="en")

Sessions = sessionmaker[Session]


def users(sessions: Sessions) -> list[tuple[object, ...]]:
    with sessions() as session:
        return [
            tuple(row)
            for row in session.execute(
                text("SELECT id, username, language, chosen_language FROM users ORDER BY id")
            )
        ]


def test_unknown_user_has_no_choice(sessions: Sessions) -> None:
    with sessions() as session:
        assert get_chosen_language(session, ANN.id) is None


def test_choosing_creates_the_user(sessions: Sessions) -> None:
    with sessions.begin() as session:
        assert set_chosen_language(session, ANN, "ru", now=T0) is True
    assert users(sessions) == [(ANN.id, "ann", "en", "ru")]
    with sessions() as session:
        assert get_chosen_language(session, ANN.id) == "ru"
        seen = session.execute(text("SELECT first_seen, last_seen FROM users")).one()
    assert {str(value)[:16] for value in seen} == {"2024-05-01 12:00"}


def test_choosing_is_idempotent(sessions: Sessions) -> None:
    with sessions.begin() as session:
        assert set_chosen_language(session, ANN, "ru", now=T0)
    with sessions.begin() as session:
        assert set_chosen_language(session, ANN, "ru", now=T0 + timedelta(hours=1)) is False
    with sessions.begin() as session:
        assert set_chosen_language(session, ANN, "en") is True
        assert set_chosen_language(session, ANN, "en") is False
        assert get_chosen_language(session, ANN.id) == "en"
    with sessions.begin() as session:
        assert set_chosen_language(session, ANN, None) is True  # forget: follow Telegram
        assert get_chosen_language(session, ANN.id) is None
        assert set_chosen_language(session, ANN, None) is False
    assert users(sessions) == [(ANN.id, "ann", "en", None)]


def test_choice_of_a_known_user_keeps_the_rest_of_the_row(sessions: Sessions) -> None:
    with sessions.begin() as session:
        upsert_user(session, ANN, now=T0)
    with sessions.begin() as session:
        renamed = TelegramUser(id=ANN.id, username="ann2", language="de")
        set_chosen_language(session, renamed, "ru", now=T0 + timedelta(days=1))
    assert users(sessions) == [(ANN.id, "ann", "en", "ru")]
    with sessions() as session:
        last_seen = session.execute(text("SELECT last_seen FROM users")).scalar_one()
    assert str(last_seen).startswith("2024-05-01 12:00")


def test_seeing_the_user_again_keeps_the_choice(sessions: Sessions) -> None:
    with sessions.begin() as session:
        set_chosen_language(session, ANN, "ru", now=T0)
    with sessions.begin() as session:
        upsert_user(session, TelegramUser(id=ANN.id, username="ann", language="fr"))
        log_query(session, user=ANN, chat_id=ANN.id, text="dog", model_version="m@1",
                  latency_ms=1.0)
    with sessions() as session:
        assert get_chosen_language(session, ANN.id) == "ru"


def test_choices_are_per_user(sessions: Sessions) -> None:
    bob = TelegramUser(id=2)
    with sessions.begin() as session:
        set_chosen_language(session, ANN, "ru")
        set_chosen_language(session, bob, "en")
    with sessions() as session:
        assert get_chosen_language(session, ANN.id) == "ru"
        assert get_chosen_language(session, bob.id) == "en"
    assert users(sessions) == [(2, None, None, "en"), (ANN.id, "ann", "en", "ru")]


@pytest.mark.parametrize("bad", ["", "x" * 9])
def test_codes_that_do_not_fit_are_refused_on_every_backend(
    sessions: Sessions, bad: str
) -> None:
    with sessions.begin() as session, pytest.raises(ValueError, match="1 to 8 characters"):
        set_chosen_language(session, ANN, bad)
    assert users(sessions) == []
