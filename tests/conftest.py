"""Shared fixtures: migrated databases for the storage tests, on SQLite and PostgreSQL.

SQLite runs always (a file per test, copied from one migrated template). PostgreSQL runs when
TEST_DATABASE_URL names a server database we may use to create others (`.ci/run` sets it to
postgresql+psycopg://postgres@127.0.0.1:5432/test): each test session creates its own
uniquely named databases (`test_<pid>_<random>...`) and drops them at the end, so concurrent
runs on one server never see each other's rows. Tests marked `postgres` are skipped without it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parents[1]
PG_ENV = "TEST_DATABASE_URL"
STORAGE_TABLES = ("feedback", "shown_photos", "queries", "users", "photo_file_ids")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(PG_ENV):
        return
    skip = pytest.mark.skip(reason=f"PostgreSQL tests need {PG_ENV}")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for `python -m bot ...` subprocesses: the repo importable, no stray settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "DATA_DIR", "EXPORT_HASH_KEY"}
    }
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if part
    )
    env.update(overrides)
    return env


PYTHON = sys.executable


class PostgresDatabases:
    """Creates throw-away databases on the TEST_DATABASE_URL server; drops them all at the end."""

    def __init__(self, server_url: str) -> None:
        from bot.storage.database import normalize_url

        self.server_url = normalize_url(server_url)
        self.prefix = f"test_{os.getpid()}_{secrets.token_hex(3)}"
        self.admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    databases = PostgresDatabases(server)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def pg_migrated_url(pg_databases: PostgresDatabases) -> str:
    """One migrated PostgreSQL database per session, emptied before each test that uses it."""
    from bot.storage.migrate import upgrade_to_head

    url = pg_databases.create()
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
def pg_scratch_url(pg_databases: PostgresDatabases) -> str:
    """A PostgreSQL database for migration tests; its schema is wiped before each use."""
    return pg_databases.create()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (much faster than migrating each time)."""
    from bot.storage.migrate import upgrade_to_head

    path = tmp_path_factory.mktemp("template") / "bot.sqlite3"
    upgrade_to_head(sqlite_url(path))
    return path


def _reset(url: str) -> None:
    """Empty the shared PostgreSQL database and put its revision back to head (a test may
    pretend the database came from another version)."""
    from bot.storage.migrate import head_revision

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"TRUNCATE {', '.join(STORAGE_TABLES)} RESTART IDENTITY CASCADE")
            )
            connection.execute(
                text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()}
            )
    finally:
        engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty, migrated database, on each backend in turn."""
    if request.param == "sqlite":
        path = tmp_path / "bot.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return sqlite_url(path)
    url: str = request.getfixturevalue("pg_migrated_url")
    _reset(url)
    return url


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a database with no tables at all (SQLite: the file does not exist yet)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "fresh" / "bot.sqlite3")
    url: str = request.getfixturevalue("pg_scratch_url")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    from bot.storage.database import make_engine

    kwargs: dict[str, Any] = (
        {} if make_url(db_url).get_backend_name() == "sqlite" else {"pool_size": 10}
    )
    engine = make_engine(db_url, **kwargs)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    from bot.storage.database import make_session_factory

    return make_session_factory(engine)
