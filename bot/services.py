"""What every handler reaches through its context: the engine, storage, signer, throttle.

Built once by `bot.run.main()` and handed to `build_application`; nothing here is created at
import time. PTB creates `bot_data` itself (with no arguments), so `bot_data` is a `BotData`
slot that `build_application` fills, and handlers use the typed `context.services`
(the pattern of PTB's `contexttypesbot.py` example).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from telegram import User
from telegram.ext import Application, CallbackContext, ExtBot

from bot.callbacks import CallbackCodec
from bot.i18n import LANGUAGES, Language, normalize_language
from bot.settings import BotSettings
from bot.storage import TelegramUser, get_chosen_language, reader, set_chosen_language
from bot.throttle import Throttle
from engine.search import SearchEngine

T = TypeVar("T")

log = logging.getLogger(__name__)

# The /language choice of the user whose update this task is handling: (user id, choice or
# None). Set by `load_language` before the handlers run (PTB runs one update's handlers in one
# task, and every task has its own copy of the context), read by the synchronous `language_of`.
_chosen_language: ContextVar[tuple[int, Language | None] | None] = ContextVar(
    "chosen_language", default=None
)


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
    # Bounds model inference running at once (CPU-bound; more would only thrash).
    search_slots: asyncio.Semaphore
    reindex_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # One "more" at a time per query, so a double tap cannot page twice.
    _paging: dict[int, asyncio.Lock] = field(default_factory=dict)

    def language_of(self, user: User | None) -> Language:
        """The language to talk to `user` in: their /language choice, else Telegram's.

        The choice is the one `load_language` read from storage for the update being handled
        (the database is the only record, so every bot replica sees the same choice).
        """
        if user is None:
            return "en"
        loaded = _chosen_language.get()
        if loaded is not None and loaded[0] == user.id and loaded[1] is not None:
            return loaded[1]
        return normalize_language(user.language_code)

    async def load_language(self, user: User | None) -> None:
        """Read `user`'s /language choice for the update being handled (before its handlers).

        A database that cannot be read costs the user their choice for this update only: they
        get Telegram's language, and whatever the handler itself stores reports the failure.
        """
        if user is None:
            return
        try:
            stored = await self.read(lambda session: get_chosen_language(session, user.id))
        except SQLAlchemyError as exc:
            log.warning("user %s: chosen language not read: %s", user.id, exc)
            return
        chosen: Language | None = next((lang for lang in LANGUAGES if lang == stored), None)
        _chosen_language.set((user.id, chosen))

    async def choose_language(self, user: TelegramUser, language: Language) -> None:
        """Store `user`'s /language choice; the rest of this update is answered in it too."""
        await self.in_transaction(lambda session: set_chosen_language(session, user, language))
        _chosen_language.set((user.id, language))

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
