"""What every handler reaches through its context: the engine, storage, signer, throttle.

Built once by `bot.run.main()` and handed to `build_application`; nothing here is created at
import time. PTB creates `bot_data` itself (with no arguments), so `bot_data` is a `BotData`
slot that `build_application` fills, and handlers use the typed `context.services`
(the pattern of PTB's `contexttypesbot.py` example).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from telegram import User
from telegram.ext import Application, CallbackContext, ExtBot

from bot.callbacks import CallbackCodec
from bot.i18n import Language, normalize_language
from bot.preferences import LanguagePreferences
from bot.settings import BotSettings
from bot.storage import reader
from bot.throttle import Throttle
from engine.search import SearchEngine

T = TypeVar("T")


@dataclass
class BotServices:
    """The bot's long-lived collaborators.

    `engine` is replaced as a whole by /reindex (a new index, same encoder): handlers read
    the attribute once per search, so a search never mixes two indexes.
    """

    settings: BotSettings
    engine: SearchEngine
    model_spec: str
    database: Engine
    sessions: sessionmaker[Session]
    codec: CallbackCodec
    throttle: Throttle
    preferences: LanguagePreferences
    # Bounds model inference running at once (CPU-bound; more would only thrash).
    search_slots: asyncio.Semaphore
    reindex_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # One "more" at a time per query, so a double tap cannot page twice.
    _paging: dict[int, asyncio.Lock] = field(default_factory=dict)

    def language_of(self, user: User | None) -> Language:
        """The language to talk to `user` in: their /language choice, else Telegram's."""
        if user is None:
            return "en"
        chosen = self.preferences.get(user.id)
        return chosen if chosen is not None else normalize_language(user.language_code)

    def is_admin(self, user: User | None) -> bool:
        return user is not None and user.id in self.settings.admin_ids

    @property
    def results_per_page(self) -> int:
        return self.settings.results_per_query

    async def in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in one transaction on a worker thread (storage is sync)."""

        def run() -> T:
            with self.sessions.begin() as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def read(self, work: Callable[[Session], T]) -> T:
        """Run read-only `work(session)` on a worker thread, in a snapshot that does not take
        SQLite's write lock (storage's `reader`), so reads never queue behind writes."""

        def run() -> T:
            with Session(reader(self.database)) as session:
                try:
                    return work(session)
                finally:
                    session.rollback()

        return await asyncio.to_thread(run)

    async def search(self, work: Callable[[SearchEngine], T]) -> T:
        """Run `work(engine)` on a worker thread, at most `SEARCH_WORKERS` at once."""
        engine = self.engine
        async with self.search_slots:
            return await asyncio.to_thread(work, engine)

    def paging_lock(self, query_id: int) -> asyncio.Lock:
        """The lock serialising "more" presses of one query (dropped once nobody holds it)."""
        if len(self._paging) > 1000:
            for key in [k for k, lock in self._paging.items() if not lock.locked()]:
                del self._paging[key]
        return self._paging.setdefault(query_id, asyncio.Lock())


class BotData:
    """PTB's `bot_data`: created empty by the Application, filled by `build_application`."""

    def __init__(self) -> None:
        self.services: BotServices | None = None


BotBot = ExtBot[int]  # ExtBot with AIORateLimiter (its per-request argument is max_retries)


class BotContext(CallbackContext[BotBot, dict[Any, Any], dict[Any, Any], BotData]):
    """The handlers' context, typed, with the services one attribute away."""

    @property
    def services(self) -> BotServices:
        services = self.bot_data.services
        if services is None:
            raise RuntimeError("bot services not set: build the app with build_application()")
        return services


BotApplication = Application[BotBot, BotContext, dict[Any, Any], dict[Any, Any], BotData, None]
