"""The bot's storage: models, engine and sessions, migrations, data access, exports.

Typical use in the bot (sync functions; the async bot calls them via `asyncio.to_thread`):

    engine = open_database(settings.database_url)      # migrates to head first
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        logged = log_query(session, user=..., chat_id=..., text=..., hits=[...], ...)
"""

from bot.storage.database import (
    DatabaseConfigError,
    make_engine,
    make_session_factory,
    normalize_url,
    reader,
    safe_url,
)
from bot.storage.exports import EXPORT_TABLES, SPECS, ExportColumn, ExportSpec, stream_export
from bot.storage.migrate import (
    MigrationError,
    MigrationStatus,
    current_revision,
    head_revision,
    is_up_to_date,
    migration_status,
    open_database,
    upgrade_to_head,
)
from bot.storage.repository import (
    Hit,
    LoggedQuery,
    NotQueryOwnerError,
    QueryInfo,
    RankConflictError,
    Shown,
    StorageError,
    TelegramUser,
    UnknownQueryError,
    UnknownShownPhotoError,
    VoteResult,
    append_shown_photos,
    forget_file_id,
    get_chosen_language,
    get_file_id,
    get_file_ids,
    get_query,
    get_shown_photos,
    get_vote,
    get_votes,
    log_query,
    put_file_id,
    set_chosen_language,
    set_vote,
    toggle_vote,
    upsert_user,
)
from bot.storage.stats import Stats, get_stats

__all__ = [
    "EXPORT_TABLES",
    "SPECS",
    "DatabaseConfigError",
    "ExportColumn",
    "ExportSpec",
    "Hit",
    "LoggedQuery",
    "MigrationError",
    "MigrationStatus",
    "NotQueryOwnerError",
    "QueryInfo",
    "RankConflictError",
    "Shown",
    "Stats",
    "StorageError",
    "TelegramUser",
    "UnknownQueryError",
    "UnknownShownPhotoError",
    "VoteResult",
    "append_shown_photos",
    "current_revision",
    "forget_file_id",
    "get_chosen_language",
    "get_file_id",
    "get_file_ids",
    "get_query",
    "get_shown_photos",
    "get_stats",
    "get_vote",
    "get_votes",
    "head_revision",
    "is_up_to_date",
    "log_query",
    "make_engine",
    "make_session_factory",
    "migration_status",
    "normalize_url",
    "open_database",
    "put_file_id",
    "reader",
    "safe_url",
    "set_chosen_language",
    "set_vote",
    "stream_export",
    "toggle_vote",
    "upgrade_to_head",
    "upsert_user",
]
