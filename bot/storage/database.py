"""Engines and sessions: one `Engine` per process, built from DATABASE_URL.

SQLite is the embedded default and gets the settings that make it safe for a bot with many
users at once:
- WAL journal, so readers (exports, statistics) never block the writer and vice versa;
- `synchronous=FULL`, so a committed query survives a crash of the machine, not only of the
  process (the cost is one fsync per commit, far below the bot's query rate);
- foreign keys on (SQLite leaves them off by default);
- a busy timeout, so concurrent writers wait for each other instead of failing;
- `BEGIN IMMEDIATE` for every transaction (SQLAlchemy emits BEGIN itself instead of Python's
  sqlite3 module): a transaction that reads then writes (a vote checks the owner first) takes
  the write lock up front, so it can never fail with "database is locked" half-way; read-only
  engines (`reader()`) keep a plain deferred BEGIN so a long export does not stall the bot.

PostgreSQL URLs are normalised to the psycopg 3 driver, the only one installed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option marking an engine whose transactions only read.
READ_ONLY_OPTION = "photo_search_read_only"


class DatabaseConfigError(ValueError):
    """DATABASE_URL is not something we can use (bad syntax, unsupported backend)."""


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL and pin PostgreSQL to psycopg 3.

    `postgres://` (Heroku style) and `postgresql://` both become `postgresql+psycopg://`;
    anything but SQLite and PostgreSQL is refused, since the schema is only tested on those.
    """
    if isinstance(url, str):
        text = url.strip()
        if text.startswith("postgres://"):
            text = "postgresql://" + text[len("postgres://") :]
        try:
            parsed = make_url(text)
        except Exception as exc:
            raise DatabaseConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    else:
        parsed = url
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise DatabaseConfigError(
            f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://..."
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for log lines and error messages."""
    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except DatabaseConfigError:
        return "<invalid database URL>"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def ensure_sqlite_directory(url: str | URL) -> None:
    """Create the directory of a SQLite file (SQLite creates files, not directories)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str | URL, *, foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """Build the process's engine for DATABASE_URL.

    `foreign_keys=False` is only for migrations: SQLite's batch mode copies and drops tables,
    and dropping a parent table with enforcement on would cascade-delete its children.
    Extra keyword arguments go to `create_engine` (pool sizes in tests and benchmarks).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _install_sqlite_hooks(engine, foreign_keys=foreign_keys)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def _install_sqlite_hooks(engine: Engine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN (see _on_begin) instead of the sqlite3 module, which
        # would not begin a transaction before SELECTs and would always begin DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def reader(engine: Engine) -> Engine:
    """A view of `engine` for long read-only work (exports, statistics).

    SQLite: a deferred transaction, i.e. a WAL snapshot that does not hold the write lock.
    PostgreSQL: REPEATABLE READ READ ONLY, so a streamed export sees one consistent snapshot
    and cannot change anything. Shares the engine's pool.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READ_ONLY_OPTION: True})
    return engine.execution_options(
        isolation_level="REPEATABLE READ",
        postgresql_readonly=True,
        **{READ_ONLY_OPTION: True},
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for the data-access functions; use `with factory.begin() as session:`.

    `expire_on_commit=False` because nothing outlives the session anyway (the repository
    returns plain dataclasses), and expiring would only cost extra SELECTs.
    """
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
