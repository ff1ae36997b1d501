"""Migrations from Python: the bot migrates at start, the export refuses an old schema.

Alembic stays the only thing that creates or changes tables; these functions only drive it
with a connection of our own (so SQLite gets the same pragmas and BEGIN handling as the bot)
and answer "is this database at head?" without changing anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from bot.storage.database import (
    ensure_sqlite_directory,
    make_engine,
    normalize_url,
    reader,
    safe_url,
    sqlite_path,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = REPO_ROOT / "migrations"
# PostgreSQL advisory lock taken by migrations/env.py around every migration run.
MIGRATION_LOCK_KEY = 7_305_118_842_019_337


class MigrationError(RuntimeError):
    """The database cannot be brought to (or read at) the code's schema revision."""


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands relative to the code's migrations."""

    current: str | None  # None: no database file, or no alembic_version row
    head: str
    known: bool = True  # False: `current` comes from a newer version of the code

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        """One line for users: where the database stands and what to do about it."""
        if self.up_to_date:
            return f"at {self.head} (up to date)"
        if not self.known:
            return (
                f"at revision {self.current}, which this code does not know "
                "(migrated by a newer version); update the code"
            )
        return (
            f"not migrated (at {self.current or 'no revision'}, needs {self.head}); "
            "run `python -m bot migrate` or start the bot once"
        )


def alembic_config() -> Config:
    """A Config that finds `migrations/` wherever the process was started from.

    Built without alembic.ini on purpose: loading the ini would reconfigure the process's
    logging (env.py calls fileConfig only when a file is given).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision the code knows (there is exactly one head)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str | URL) -> str | None:
    """The database's revision, or None when it was never migrated.

    Never creates anything: a SQLite file that does not exist is reported as un-migrated
    instead of being created empty by the act of looking.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    engine = make_engine(url, poolclass=NullPool)
    try:
        # A read-only transaction: looking must not wait for (or block) a running migration.
        with reader(engine).connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
            connection.rollback()
    finally:
        engine.dispose()
    if len(heads) > 1:
        raise MigrationError(f"database has several revisions {heads}; resolve by hand")
    return heads[0] if heads else None


def migration_status(url: str | URL) -> MigrationStatus:
    current = current_revision(url)
    return MigrationStatus(current=current, head=head_revision(), known=_is_known(current))


def is_up_to_date(url: str | URL) -> bool:
    return migration_status(url).up_to_date


def upgrade_to_head(url: str | URL) -> MigrationStatus:
    """Bring the database to the code's head revision; a no-op when it is there already.

    Everything happens in one transaction (PostgreSQL and, thanks to our BEGIN handling,
    SQLite too), so a process killed while migrating leaves the old schema intact. On SQLite
    the foreign keys are checked once at the end, since they are not enforced while
    batch-mode migrations copy tables around.
    """
    ensure_sqlite_directory(url)
    before = current_revision(url)
    head = head_revision()
    _known_or_raise(before)
    if before != head:
        _run(url, lambda config: command.upgrade(config, "head"))
        log.info("database %s migrated from %s to %s", safe_url(url), before or "empty", head)
    return MigrationStatus(current=current_revision(url), head=head)


def downgrade_to(url: str | URL, revision: str) -> None:
    """Downgrade to `revision` ("base" drops every table). For tests and rollbacks by hand."""
    _run(url, lambda config: command.downgrade(config, revision))


def _is_known(revision: str | None) -> bool:
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _known_or_raise(revision: str | None) -> None:
    if not _is_known(revision):
        raise MigrationError(
            f"database is at revision {revision}, which this code does not know: "
            "it was migrated by a newer version; update the code"
        )


# Alembic keeps its running context in module globals (`alembic.context`, `alembic.op`), so
# two commands in one process must not overlap; separate processes are serialised by the
# database (SQLite's write lock, the advisory lock in migrations/env.py).
_ALEMBIC_LOCK = threading.Lock()


def _run(url: str | URL, action: Callable[[Config], None]) -> None:
    """Run an alembic command over one connection and one transaction of ours."""
    parsed = normalize_url(url)
    engine = make_engine(parsed, foreign_keys=False, poolclass=NullPool)
    try:
        with _ALEMBIC_LOCK, engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            action(config)
            if parsed.get_backend_name() == "sqlite":
                problems = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
                if problems:
                    raise MigrationError(f"foreign key violations after migrating: {problems[:5]}")
    finally:
        engine.dispose()


def open_database(url: str | URL, **engine_kwargs: Any) -> Engine:
    """The bot's start: migrate the database to head if needed, then return its engine."""
    upgrade_to_head(url)
    return make_engine(url, **engine_kwargs)
