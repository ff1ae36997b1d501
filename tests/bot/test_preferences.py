"""/language choices live in the database: they survive a restart (and are shared by replicas),
a user who never chose gets their Telegram language, and concurrent updates do not mix users.

`BotServices` as the bot builds it, on SQLite and PostgreSQL; each "update" runs in its own
task, as PTB runs each update (the `before_handlers` hook first, then the handler).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from telegram import User

from bot.callbacks import CallbackCodec
from bot.handlers.common import telegram_user
from bot.i18n import Language
from bot.services import BotServices
from bot.settings import BotSettings
from bot.storage import make_engine, make_session_factory
from bot.throttle import Throttle
from engine.search import SearchEngine

T = TypeVar("T")

ANN = User(id=5_000_000_001, first_name="Ann", is_bot=False, language_code="en-GB")
IVAN = User(id=2, first_name="Иван", is_bot=False, language_code="ru-RU")
NOBODY = User(id=3, first_name="No", is_bot=False)  # no language_code at all


@contextmanager
def running_bot(url: str, tmp_path: Path) -> Iterator[BotServices]:
    """The services of one bot process on `url` (a new engine: nothing cached in between)."""
    database = make_engine(url)
    try:
        yield BotServices(
            settings=BotSettings(data_dir=tmp_path, database_url=url),
            engine=cast(SearchEngine, None),  # no searches here
            model_spec="test",
            database=database,
            sessions=make_session_factory(database),
            codec=CallbackCodec(b"k" * 32),
            throttle=Throttle(0.0, 0),
            search_slots=asyncio.Semaphore(1),
        )
    finally:
        database.dispose()


def update(services: BotServices, user: User, handler: Callable[[], Awaitable[T]]) -> T:
    """Handle one update from `user` in its own task, as PTB does: load, then the handler."""

    async def process() -> T:
        await services.load_language(user)
        return await handler()

    return asyncio.run(process())


def language_seen(services: BotServices, user: User) -> Language:
    async def handler() -> Language:
        return services.language_of(user)

    return update(services, user, handler)


def choose(services: BotServices, user: User, language: Language) -> Language:
    """/language LANGUAGE; returns the language the rest of that update is answered in."""

    async def handler() -> Language:
        await services.choose_language(telegram_user(user), language)
        return services.language_of(user)

    return update(services, user, handler)


def stored(url: str) -> dict[int, str | None]:
    database = make_engine(url)
    try:
        with database.connect() as connection:
            rows = connection.execute(text("SELECT id, chosen_language FROM users"))
            return {row.id: row.chosen_language for row in rows}
    finally:
        database.dispose()


def test_choice_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    with running_bot(db_url, tmp_path) as bot:
        assert language_seen(bot, ANN) == "en"
        assert choose(bot, ANN, "ru") == "ru"  # the confirmation is already in Russian
        assert language_seen(bot, ANN) == "ru"
        assert choose(bot, IVAN, "en") == "en"
        assert choose(bot, IVAN, "en") == "en"  # choosing again changes nothing
    assert stored(db_url) == {ANN.id: "ru", IVAN.id: "en"}
    with running_bot(db_url, tmp_path) as restarted:
        assert language_seen(restarted, ANN) == "ru"
        assert language_seen(restarted, IVAN) == "en"


def test_replicas_see_each_others_choices(db_url: str, tmp_path: Path) -> None:
    with running_bot(db_url, tmp_path) as one, running_bot(db_url, tmp_path) as two:
        assert language_seen(two, ANN) == "en"
        choose(one, ANN, "ru")
        assert language_seen(two, ANN) == "ru"
        choose(two, ANN, "en")
        assert language_seen(one, ANN) == "en"


def test_who_never_chose_gets_their_telegram_language(db_url: str, tmp_path: Path) -> None:
    with running_bot(db_url, tmp_path) as bot:
        assert language_seen(bot, IVAN) == "ru"
        assert language_seen(bot, ANN) == "en"
        assert language_seen(bot, NOBODY) == "en"
        assert bot.language_of(None) == "en"
    assert stored(db_url) == {}  # looking stores nothing


def test_a_stored_language_the_bot_does_not_speak_is_ignored(
    db_url: str, tmp_path: Path
) -> None:
    with running_bot(db_url, tmp_path) as bot:
        choose(bot, IVAN, "en")
        with bot.sessions.begin() as session:
            session.execute(text("UPDATE users SET chosen_language = 'de'"))
        assert language_seen(bot, IVAN) == "ru"


def test_concurrent_updates_keep_their_own_users(db_url: str, tmp_path: Path) -> None:
    """The loaded choice belongs to the update's task: another user's update running at the
    same time (or a handler asking about a different user) never sees it."""
    with running_bot(db_url, tmp_path) as bot:
        choose(bot, ANN, "ru")

        async def both() -> list[tuple[Language, Language]]:
            ready = asyncio.Barrier(2)

            async def one(user: User, other: User) -> tuple[Language, Language]:
                await bot.load_language(user)
                await ready.wait()  # both loaded before either looks
                return bot.language_of(user), bot.language_of(other)

            return list(await asyncio.gather(one(ANN, IVAN), one(IVAN, ANN)))

        assert asyncio.run(both()) == [("ru", "ru"), ("ru", "en")]
        # Outside any update nothing was loaded: Telegram's language.
        assert bot.language_of(ANN) == "en"


def test_unreadable_database_falls_back_to_telegram(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_bot(db_url, tmp_path) as bot:
        choose(bot, ANN, "ru")

        async def broken(work: Any) -> Any:
            raise OperationalError("SELECT", {}, Exception("database is gone"))

        monkeypatch.setattr(bot, "read", broken)
        assert language_seen(bot, ANN) == "en"
    assert "chosen language not read" in caplog.text
