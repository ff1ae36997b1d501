"""Alembic is the only source of the schema, and it produces exactly the models' schema.

On SQLite and PostgreSQL: upgrade head → downgrade base → upgrade head works; the migrated
database compares equal to the models (alembic's autogenerate comparison with types, server
defaults and named CHECK constraints); `alembic` run from the repository root honours
DATABASE_URL; the bot's start migrates an empty database; looking never creates anything.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from bot.cli import main
from bot.storage.database import ensure_sqlite_directory, make_engine
from bot.storage.migrate import (
    MIGRATION_LOCK_KEY,
    current_revision,
    downgrade_to,
    head_revision,
    is_up_to_date,
    migration_status,
    open_database,
    upgrade_to_head,
)
from bot.storage.models import Base
from tests.conftest import PYTHON, REPO_ROOT, sqlite_url, subprocess_env

TABLES = {"users", "queries", "shown_photos", "feedback", "reports", "photo_file_ids"}


def schema_diff(engine: Engine, metadata: MetaData) -> list[Any]:
    """Everything autogenerate would change to make the database match `metadata`."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "autogenerate_plugins": [
                    "alembic.autogenerate.*",
                    "alembic.ext.checkconstraint_byname",
                ],
            },
        )
        return list(compare_metadata(context, metadata))


def check_constraints(engine: Engine) -> set[tuple[str, str]]:
    inspector = inspect(engine)
    return {
        (table, constraint["name"] or "")
        for table in TABLES
        for constraint in inspector.get_check_constraints(table)
    }


def model_check_constraints() -> set[tuple[str, str]]:
    from sqlalchemy import CheckConstraint

    return {
        (table.name, str(constraint.name))
        for table in Base.metadata.sorted_tables
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }


def table_names(url: str) -> set[str]:
    engine = make_engine(url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_round_trip_and_schema_equals_models(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    assert upgrade_to_head(empty_db_url).up_to_date
    assert table_names(empty_db_url) == TABLES | {"alembic_version"}

    downgrade_to(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    assert table_names(empty_db_url) == {"alembic_version"}

    status = upgrade_to_head(empty_db_url)
    assert status.current == status.head == head_revision()
    engine = make_engine(empty_db_url, poolclass=NullPool)
    try:
        assert schema_diff(engine, Base.metadata) == []
        assert check_constraints(engine) == model_check_constraints()
        assert len(model_check_constraints()) == 7
    finally:
        engine.dispose()


def test_comparison_notices_a_difference(db_url: str) -> None:
    """The equality above means something: a model the migrations lack is reported."""
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        changed = MetaData(naming_convention=Base.metadata.naming_convention)
        for table in Base.metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["feedback"].append_column(Column("weight", Integer))
        diff = schema_diff(engine, changed)
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_column"]


def test_upgrade_is_idempotent_and_keeps_rows(db_url: str) -> None:
    engine = make_engine(db_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, first_seen, last_seen) "
                    "VALUES (7, '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
                )
            )
        upgrade_to_head(db_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id FROM users")).scalars().all() == [7]
    finally:
        engine.dispose()


def test_bot_start_migrates_empty_database(empty_db_url: str) -> None:
    assert not is_up_to_date(empty_db_url)
    engine = open_database(empty_db_url)
    try:
        assert is_up_to_date(empty_db_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM queries")).scalar_one() == 0
    finally:
        engine.dispose()


@contextmanager
def migration_lock_held(url: str) -> Iterator[None]:
    """Hold what concurrent migrations queue on: SQLite's write lock, or the advisory lock."""
    ensure_sqlite_directory(url)
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                connection.commit()
                yield
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                connection.commit()
            else:
                connection.begin()  # BEGIN IMMEDIATE: the write lock
                yield
                connection.rollback()
    finally:
        engine.dispose()


def wait_for_waiters(url: str, count: int, timeout: float = 30.0) -> None:
    """Until `count` sessions wait for the advisory lock (PostgreSQL); a pause on SQLite."""
    if not url.startswith("postgresql"):
        time.sleep(2)  # the children need ~1 s to start; a slow start only weakens the test
        return
    engine = make_engine(url, poolclass=NullPool)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                waiting = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar_one()
            if waiting >= count:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"fewer than {count} migrations waited for the lock")


def test_starting_at_once_migrates_once(empty_db_url: str) -> None:
    """Bots starting together all find an empty database, queue on the migration lock, and
    are released at once: one migrates, the others find it done. Threads of one process
    queue too (alembic's running state is process-global, so migrate.py serialises them)."""
    with migration_lock_held(empty_db_url):
        children = [
            subprocess.Popen(
                [PYTHON, "-m", "bot", "migrate"],
                cwd=REPO_ROOT,
                env=subprocess_env(DATABASE_URL=empty_db_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        errors: list[BaseException] = []

        def start() -> None:
            try:
                upgrade_to_head(empty_db_url)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_for_waiters(empty_db_url, 3)  # two children and the first thread
    for thread in threads:
        thread.join()
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert errors == []
    assert is_up_to_date(empty_db_url)


def test_looking_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "bot.sqlite3"
    status = migration_status(sqlite_url(path))
    assert status.current is None and not status.up_to_date
    assert not path.exists() and not path.parent.exists()


def test_sqlite_pragmas(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite pragmas")
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()


def run_alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`alembic ARGS` from the repository root with DATABASE_URL set, as an operator runs it."""
    return subprocess.run(
        [PYTHON, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env=subprocess_env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_alembic_cli_honours_database_url(empty_db_url: str) -> None:
    upgraded = run_alembic(empty_db_url, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr
    assert current_revision(empty_db_url) == head_revision()
    checked = run_alembic(empty_db_url, "check")
    assert checked.returncode == 0, checked.stderr
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr


def test_migrate_command(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checked = subprocess.run(
        [PYTHON, "-m", "bot", "migrate", "--check"],
        cwd=REPO_ROOT,
        env=subprocess_env(DATABASE_URL=empty_db_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 1, checked.stderr
    assert "not migrated (at no revision, needs" in checked.stdout

    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    assert main(["migrate"]) == 0
    assert "migrated from empty to" in capsys.readouterr().out
    assert main(["migrate", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "already at" in capsys.readouterr().out
