"""What the admin exports contain, and streaming them out of the database.

Each export is one SELECT whose rows are fetched in batches (a server-side cursor on
PostgreSQL, SQLite's own incremental cursor), so exporting millions of rows takes constant
memory. Rows come out as plain tuples, in a stable order, with real user ids; pseudonymising
them is the exporter's job (`bot.exporting`), which keeps this module free of key handling.

Time windows: `since` is inclusive and `until` exclusive, both aware datetimes. Queries are
filtered by when they were made, feedback and labels by when the vote was (last) cast,
reports by when the photo was reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Double, Select, and_, case, cast, func, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from bot.storage.models import VOTE_UP, Feedback, Query, Report, ShownPhoto, User

ColumnKind = Literal["int", "float", "str", "bool", "datetime"]
EXPORT_TABLES = ("queries", "feedback", "labels", "reports")
DEFAULT_BATCH_SIZE = 5_000


@dataclass(frozen=True)
class ExportColumn:
    name: str
    kind: ColumnKind
    # "user": a user or chat id that the exporter pseudonymises unless told otherwise;
    # "identity": only exported with real ids (e.g. the username).
    sensitive: Literal["", "user", "identity"] = ""


@dataclass(frozen=True)
class ExportSpec:
    table: str
    columns: tuple[ExportColumn, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


QUERIES = ExportSpec(
    "queries",
    (
        ExportColumn("query_id", "int"),
        ExportColumn("created_at", "datetime"),
        ExportColumn("user_id", "int", "user"),
        ExportColumn("chat_id", "int", "user"),
        ExportColumn("username", "str", "identity"),
        ExportColumn("kind", "str"),
        ExportColumn("text", "str"),
        ExportColumn("language", "str"),
        ExportColumn("refused", "bool"),
        ExportColumn("refusal_reason", "str"),
        ExportColumn("model_version", "str"),
        ExportColumn("n_results", "int"),
        ExportColumn("latency_ms", "float"),
        ExportColumn("withheld", "int"),
        ExportColumn("filter_version", "str"),
    ),
)

FEEDBACK = ExportSpec(
    "feedback",
    (
        ExportColumn("voted_at", "datetime"),
        ExportColumn("user_id", "int", "user"),
        ExportColumn("query_id", "int"),
        ExportColumn("query_created_at", "datetime"),
        ExportColumn("kind", "str"),
        ExportColumn("query", "str"),
        ExportColumn("language", "str"),
        ExportColumn("model_version", "str"),
        ExportColumn("photo", "str"),
        ExportColumn("rank", "int"),
        ExportColumn("score", "float"),
        ExportColumn("vote", "int"),
    ),
)

# The shape `training` reads: one row per (query text, photo) with the share of 👍 in [0, 1].
LABELS = ExportSpec(
    "labels",
    (
        ExportColumn("photo", "str"),
        ExportColumn("query", "str"),
        ExportColumn("label", "float"),
        ExportColumn("votes", "int"),
    ),
)

# 🚫 presses: which shown photo a user reported as showing a child (the block itself lives in
# the engine's moderation file).
REPORTS = ExportSpec(
    "reports",
    (
        ExportColumn("reported_at", "datetime"),
        ExportColumn("user_id", "int", "user"),
        ExportColumn("query_id", "int"),
        ExportColumn("query", "str"),
        ExportColumn("photo", "str"),
        ExportColumn("rank", "int"),
    ),
)

SPECS = {spec.table: spec for spec in (QUERIES, FEEDBACK, LABELS, REPORTS)}


def time_window(
    column: InstrumentedAttribute[datetime], since: datetime | None, until: datetime | None
) -> ColumnElement[bool]:
    """`since <= column < until`, either bound optional."""
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return and_(true(), *conditions)


def export_select(
    table: str, *, since: datetime | None, until: datetime | None
) -> Select[*tuple[Any, ...]]:
    """The SELECT behind one export; its columns are in `SPECS[table]` order."""
    if table == "queries":
        return (
            select(
                Query.id,
                Query.created_at,
                Query.user_id,
                Query.chat_id,
                User.username,
                Query.kind,
                Query.text,
                Query.language,
                Query.refused,
                Query.refusal_reason,
                Query.model_version,
                Query.n_results,
                Query.latency_ms,
                Query.withheld,
                Query.filter_version,
            )
            .join(User, User.id == Query.user_id)
            .where(time_window(Query.created_at, since, until))
            .order_by(Query.created_at, Query.id)
        )
    if table == "feedback":
        return (
            select(
                Feedback.updated_at,
                Feedback.user_id,
                Query.id,
                Query.created_at,
                Query.kind,
                Query.text,
                Query.language,
                Query.model_version,
                ShownPhoto.photo,
                ShownPhoto.rank,
                ShownPhoto.score,
                Feedback.vote,
            )
            .join(ShownPhoto, ShownPhoto.id == Feedback.shown_photo_id)
            .join(Query, Query.id == ShownPhoto.query_id)
            .where(Feedback.vote.is_not(None), time_window(Feedback.updated_at, since, until))
            .order_by(Feedback.updated_at, Feedback.shown_photo_id, Feedback.user_id)
        )
    if table == "labels":
        # Only text queries that were answered: a refused query is never a label, and a photo
        # query's text is a Telegram file id, not a description.
        ups = func.sum(case((Feedback.vote == VOTE_UP, 1), else_=0))
        votes = func.count()
        return (
            select(
                ShownPhoto.photo,
                Query.text,
                cast(ups, Double) / votes,
                votes,
            )
            .join(ShownPhoto, ShownPhoto.id == Feedback.shown_photo_id)
            .join(Query, Query.id == ShownPhoto.query_id)
            .where(
                Feedback.vote.is_not(None),
                Query.refused.is_(False),
                Query.kind == "text",
                time_window(Feedback.updated_at, since, until),
            )
            .group_by(Query.text, ShownPhoto.photo)
            .order_by(Query.text, ShownPhoto.photo)
        )
    if table == "reports":
        return (
            select(
                Report.created_at,
                Report.user_id,
                Query.id,
                Query.text,
                ShownPhoto.photo,
                ShownPhoto.rank,
            )
            .join(ShownPhoto, ShownPhoto.id == Report.shown_photo_id)
            .join(Query, Query.id == ShownPhoto.query_id)
            .where(time_window(Report.created_at, since, until))
            .order_by(Report.created_at, Report.shown_photo_id, Report.user_id)
        )
    raise ValueError(f"unknown export {table!r}; choose one of {', '.join(EXPORT_TABLES)}")


def stream_export(
    session: Session,
    table: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Yield the export's rows in batches of at most `batch_size` plain tuples.

    Use a session from `database.reader(engine)`: a read-only snapshot on PostgreSQL, and on
    SQLite a transaction that does not hold the write lock while the export runs.
    """
    stmt = export_select(table, since=since, until=until)
    # Core execution on the session's connection: same transaction, no ORM row processing.
    result = session.connection().execute(stmt, execution_options={"yield_per": batch_size})
    try:
        for partition in result.partitions():
            yield [tuple(row) for row in partition]
    finally:
        result.close()
