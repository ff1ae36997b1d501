"""Alembic environment: which database, and how to talk to it.

The URL comes from, in order: a connection handed over by `bot.storage.migrate` (the bot at
start, `python -m bot migrate`, tests), `-x url=...` on the alembic command line, and finally
DATABASE_URL as `bot.settings.BotSettings` reads it (environment or `.env`, SQLite under
DATA_DIR by default), so `alembic upgrade head` from the repository root migrates the same
database the bot uses.

SQLite runs in batch mode (`render_as_batch`) with foreign-key enforcement off while migrating
(a batch migration drops and re-creates tables; with enforcement on, dropping a parent table
would cascade-delete its children), and all revisions of one run share one transaction.
PostgreSQL takes an advisory lock first, so two bot
processes starting at once migrate one after the other instead of racing on CREATE TABLE.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.storage.database import ensure_sqlite_directory, make_engine, normalize_url
from bot.storage.migrate import MIGRATION_LOCK_KEY
from bot.storage.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate when no connection was handed over."""
    x_args = context.get_x_argument(as_dictionary=True)
    if x_args.get("url"):
        return x_args["url"]
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    from bot.settings import BotSettings

    return BotSettings().database_url


def configure_options(dialect_name: str) -> dict[str, object]:
    """Options shared by online and offline runs (and by autogenerate / `alembic check`)."""
    return {
        "target_metadata": target_metadata,
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "compare_server_default": True,
        # Also compare CHECK constraints (by name), which alembic skips by default.
        "autogenerate_plugins": ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname"],
        # SQLite DDL is transactional once SQLAlchemy emits BEGIN itself (bot.storage.database
        # does): a killed migration then leaves the previous schema, never half of the new one.
        "transactional_ddl": True,
    }


def run_migrations_offline() -> None:
    """`alembic upgrade head --sql`: print the SQL instead of running it."""
    url = normalize_url(database_url())
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(url.get_backend_name()),  # type: ignore[arg-type]
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with_connection(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options(connection.dialect.name))  # type: ignore[arg-type]
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    handed_over = config.attributes.get("connection")
    if handed_over is not None:
        run_with_connection(handed_over)
        return
    url = database_url()
    ensure_sqlite_directory(url)
    engine = make_engine(url, foreign_keys=False, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_with_connection(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
