"""The tables of the bot's log: users, queries, the photos shown for them, votes, reports,
file ids.

These classes describe the schema; `migrations/` creates it (the test suite proves the two
agree). Handlers never see these objects: `repository.py` returns plain dataclasses.

Choices worth knowing:
- Telegram ids are 64-bit (`BigInteger`); our own surrogate keys are `BigInteger` on PostgreSQL
  and `INTEGER` on SQLite, where only `INTEGER PRIMARY KEY` is an auto-incrementing rowid.
- Photo identity is the path relative to the photo folder, exactly as the engine's index
  reports it (`beach/dog.jpg`).
- A withdrawn vote keeps its row with `vote = NULL`: the time of the withdrawal is kept, and
  re-voting later updates the same row, so "one row per user per shown photo" always holds.
- Every constraint has a deterministic name (naming convention below), which SQLite's batch
  migrations need in order to drop or alter them later.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.storage.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Surrogate keys: BIGINT where it is a real type, the rowid alias on SQLite.
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")

QUERY_KINDS = ("text", "photo")
VOTE_UP = 1
VOTE_DOWN = -1


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A Telegram user who has talked to the bot."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(64))
    # The client's language code as Telegram last reported it (refreshed on every query).
    language: Mapped[str | None] = mapped_column(String(16))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    # The interface language the user picked with /language; NULL: follow `language`.
    chosen_language: Mapped[str | None] = mapped_column(String(8))


class Query(Base):
    """One search: a text (or a photo sent as a query) and what the engine made of it."""

    __tablename__ = "queries"
    __table_args__ = (
        CheckConstraint("kind IN ('text', 'photo')", name="kind"),
        CheckConstraint("refused OR refusal_reason IS NULL", name="reason_only_if_refused"),
        CheckConstraint("n_results >= 0", name="n_results_nonnegative"),
        CheckConstraint("latency_ms >= 0", name="latency_nonnegative"),
        CheckConstraint("withheld IS NULL OR withheld >= 0", name="withheld_nonnegative"),
        Index(None, "created_at"),
        Index(None, "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    # 'text': a described photo; 'photo': a photo sent as the query (text holds its id).
    kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    refused: Mapped[bool] = mapped_column(Boolean)
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(String(128))
    # Photos shown so far (all pages); kept equal to the number of shown_photos rows.
    n_results: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Double)
    # Photos hidden by the child-photo filter (NULL: no filter ran).
    withheld: Mapped[int | None] = mapped_column(Integer)
    filter_version: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ShownPhoto(Base):
    """A photo shown as the `rank`-th result of a query; the thing users vote on."""

    __tablename__ = "shown_photos"
    __table_args__ = (
        UniqueConstraint("query_id", "rank"),
        CheckConstraint("rank >= 1", name="rank_positive"),
    )

    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    query_id: Mapped[int] = mapped_column(
        SurrogateKey, ForeignKey("queries.id", ondelete="CASCADE")
    )
    rank: Mapped[int] = mapped_column(Integer)
    photo: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Double)


class Feedback(Base):
    """A user's current vote on a shown photo: +1, -1, or NULL once withdrawn."""

    __tablename__ = "feedback"
    __table_args__ = (
        PrimaryKeyConstraint("shown_photo_id", "user_id"),
        CheckConstraint("vote IS NULL OR vote IN (-1, 1)", name="vote_value"),
        Index(None, "user_id"),
        Index(None, "updated_at"),
    )

    shown_photo_id: Mapped[int] = mapped_column(
        SurrogateKey, ForeignKey("shown_photos.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    vote: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Report(Base):
    """A user's report that a shown photo shows a child (the 🚫 button).

    The engine's moderation file holds the block that hides the photo; this row records who
    reported what and when, next to the rest of the log. One row per user per shown photo: a
    second press changes nothing.
    """

    __tablename__ = "reports"
    __table_args__ = (
        PrimaryKeyConstraint("shown_photo_id", "user_id"),
        Index(None, "created_at"),
    )

    shown_photo_id: Mapped[int] = mapped_column(
        SurrogateKey, ForeignKey("shown_photos.id", ondelete="CASCADE")
    )
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PhotoFileId(Base):
    """Telegram's `file_id` for a photo once uploaded, so it is re-sent without uploading.

    File ids belong to one bot, hence `bot_id` in the key; `fingerprint` (chosen by the bot,
    e.g. size and mtime of the source file) makes a replaced photo miss the cache.
    """

    __tablename__ = "photo_file_ids"
    __table_args__ = (PrimaryKeyConstraint("bot_id", "photo"),)

    bot_id: Mapped[int] = mapped_column(BigInteger)
    photo: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(128))
    file_id: Mapped[str] = mapped_column(Text)
    file_unique_id: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
