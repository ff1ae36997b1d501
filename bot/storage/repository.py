"""Data access for the bot: every function takes a Session and returns plain values.

The caller owns the transaction (`with sessions.begin() as session: ...`), so one call is
one unit of work that commits or vanishes whole; no function here commits, and no ORM object
leaves this module (handlers get frozen dataclasses, ints and strings).

Votes are written with single-statement upserts (PostgreSQL `ON CONFLICT`, the same in
SQLite), so concurrent taps on the same button can neither violate "one row per user per shown
photo" nor lose a change: whichever statement commits last wins, and repeating a statement
changes nothing. A vote is only accepted from the user who owns the query the photo was shown
for, so a forged callback cannot vote for somebody else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, literal, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.storage.models import (
    QUERY_KINDS,
    VOTE_DOWN,
    VOTE_UP,
    Feedback,
    PhotoFileId,
    Query,
    Report,
    ShownPhoto,
    User,
)

log = logging.getLogger(__name__)

VALID_VOTES = (VOTE_UP, VOTE_DOWN)


# ---------------------------------------------------------------------------------------------
# Errors


class StorageError(Exception):
    """Base of the errors a handler is expected to catch and answer."""


class UnknownQueryError(StorageError, LookupError):
    """No query with this id (a stale or forged callback)."""


class UnknownShownPhotoError(StorageError, LookupError):
    """No shown photo with this id (a stale or forged callback)."""


class NotQueryOwnerError(StorageError, PermissionError):
    """The user pressed a button of somebody else's results (forged or forwarded callback)."""


class RankConflictError(StorageError):
    """A retried "more" page does not match the photos already shown at those ranks."""


# ---------------------------------------------------------------------------------------------
# Values handed to and returned from handlers


@dataclass(frozen=True)
class TelegramUser:
    """The parts of a Telegram user we keep."""

    id: int
    username: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Shown:
    """A photo shown for a query; `id` goes into the vote buttons' callback data."""

    id: int
    query_id: int
    rank: int
    photo: str
    score: float


@dataclass(frozen=True)
class LoggedQuery:
    id: int
    created_at: datetime
    shown: tuple[Shown, ...]


@dataclass(frozen=True)
class VoteResult:
    """The vote's state after the call, and whether the call changed anything."""

    shown_photo_id: int
    vote: int | None
    changed: bool


# A search hit as the engine reports it: (photo path relative to PHOTOS_DIR, score).
Hit = tuple[str, float]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _dialect_insert(session: Session, table: Any) -> Any:
    """INSERT with `on_conflict_do_update` for the session's database (same API on both)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database {name!r}")


# ---------------------------------------------------------------------------------------------
# Users


def upsert_user(session: Session, user: TelegramUser, *, now: datetime | None = None) -> None:
    """Record that `user` was seen now: insert on first sight, refresh name and language later.

    `last_seen` only moves forward, so two concurrent updates cannot set it back in time.
    A language the client stops sending is kept rather than erased.
    """
    now = now or utcnow()
    stmt = _dialect_insert(session, User).values(
        id=user.id,
        username=user.username,
        language=user.language,
        first_seen=now,
        last_seen=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[User.id],
        set_={
            "username": stmt.excluded.username,
            "language": func.coalesce(stmt.excluded.language, User.language),
            "last_seen": case(
                (stmt.excluded.last_seen > User.last_seen, stmt.excluded.last_seen),
                else_=User.last_seen,
            ),
        },
    )
    session.execute(stmt)


CHOSEN_LANGUAGE_MAX = 8  # users.chosen_language is String(8)


def set_chosen_language(
    session: Session, user: TelegramUser, language: str | None, *, now: datetime | None = None
) -> bool:
    """Remember the interface language `user` chose (/language); None forgets the choice.

    One statement: a user the bot has not seen yet gets their row (as `upsert_user` would make
    it), a known user only has `chosen_language` changed. Idempotent: choosing the language
    already chosen changes nothing. Returns whether anything changed. The code is stored as
    given; which codes the bot speaks is the bot's business, not storage's.
    """
    if language is not None and not 0 < len(language) <= CHOSEN_LANGUAGE_MAX:
        raise ValueError(f"a language code has 1 to {CHOSEN_LANGUAGE_MAX} characters: {language!r}")
    now = now or utcnow()
    stmt = _dialect_insert(session, User).values(
        id=user.id,
        username=user.username,
        language=user.language,
        first_seen=now,
        last_seen=now,
        chosen_language=language,
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[User.id],
        set_={"chosen_language": excluded.chosen_language},
        where=User.chosen_language.is_distinct_from(excluded.chosen_language),
    ).returning(User.id)
    return session.execute(stmt).first() is not None


def get_chosen_language(session: Session, user_id: int) -> str | None:
    """The language `user_id` chose with /language; None when they never chose (or are unknown)."""
    return session.execute(
        select(User.chosen_language).where(User.id == user_id)
    ).scalar_one_or_none()


# ---------------------------------------------------------------------------------------------
# Queries and the photos shown for them


def log_query(
    session: Session,
    *,
    user: TelegramUser,
    chat_id: int,
    text: str,
    model_version: str,
    latency_ms: float,
    hits: Sequence[Hit] = (),
    kind: str = "text",
    language: str | None = None,
    refused: bool = False,
    refusal_reason: str | None = None,
    withheld: int | None = None,
    filter_version: str | None = None,
    now: datetime | None = None,
) -> LoggedQuery:
    """Log a query and the photos shown for it (ranks 1..n in `hits` order).

    Within the caller's transaction, so the query and all its photos commit together or not at
    all: there is never a query with half its photos. A refused query shows no photos.
    """
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind must be one of {QUERY_KINDS}, not {kind!r}")
    if refused and hits:
        raise ValueError("a refused query shows no photos")
    if refusal_reason is not None and not refused:
        raise ValueError("refusal_reason given for a query that was not refused")
    now = now or utcnow()
    upsert_user(session, user, now=now)
    query_id = session.execute(
        insert(Query).returning(Query.id),
        {
            "user_id": user.id,
            "chat_id": chat_id,
            "kind": kind,
            "text": text,
            "language": language,
            "refused": refused,
            "refusal_reason": refusal_reason,
            "model_version": model_version,
            "n_results": len(hits),
            "latency_ms": latency_ms,
            "withheld": withheld,
            "filter_version": filter_version,
            "created_at": now,
        },
    ).scalar_one()
    shown = _insert_shown(session, query_id, hits, first_rank=1)
    return LoggedQuery(id=query_id, created_at=now, shown=shown)


def _insert_shown(
    session: Session, query_id: int, hits: Sequence[Hit], *, first_rank: int
) -> tuple[Shown, ...]:
    if not hits:
        return ()
    rows = [
        {"query_id": query_id, "rank": first_rank + i, "photo": photo, "score": float(score)}
        for i, (photo, score) in enumerate(hits)
    ]
    result = session.execute(
        insert(ShownPhoto).returning(ShownPhoto.id, sort_by_parameter_order=True), rows
    )
    ids = [row.id for row in result]
    return tuple(
        Shown(id=id_, query_id=query_id, rank=first_rank + i, photo=photo, score=float(score))
        for i, (id_, (photo, score)) in enumerate(zip(ids, hits, strict=True))
    )


def append_shown_photos(
    session: Session,
    *,
    query_id: int,
    user_id: int,
    hits: Sequence[Hit],
    start_rank: int | None = None,
) -> tuple[Shown, ...]:
    """Append the next page of results to a query ("more"); ranks continue where they stopped.

    Only the query's owner may page it. The query row is locked (PostgreSQL `FOR UPDATE`;
    SQLite transactions here are serialised anyway), so two concurrent "more" presses append
    one after the other. Pass `start_rank` (the rank the page should start at, e.g. 11) to make
    a retried callback idempotent: when those ranks already hold the same photos, they are
    returned unchanged instead of being appended a second time.
    """
    row = session.execute(
        select(Query.user_id, Query.refused).where(Query.id == query_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise UnknownQueryError(f"no query {query_id}")
    if row.user_id != user_id:
        raise NotQueryOwnerError(f"query {query_id} belongs to another user")
    if row.refused:
        raise ValueError("a refused query has no results to page")
    last_rank = session.execute(
        select(func.coalesce(func.max(ShownPhoto.rank), 0)).where(ShownPhoto.query_id == query_id)
    ).scalar_one()
    first_rank = last_rank + 1 if start_rank is None else start_rank
    if first_rank < 1 or first_rank > last_rank + 1:
        raise ValueError(f"start_rank {start_rank} leaves a gap after rank {last_rank}")
    if first_rank <= last_rank:
        return _existing_page(session, query_id, hits, first_rank)
    shown = _insert_shown(session, query_id, hits, first_rank=first_rank)
    session.execute(
        update(Query).where(Query.id == query_id).values(n_results=Query.n_results + len(hits))
    )
    return shown


def _existing_page(
    session: Session, query_id: int, hits: Sequence[Hit], first_rank: int
) -> tuple[Shown, ...]:
    existing = tuple(
        shown
        for shown in get_shown_photos(session, query_id)
        if first_rank <= shown.rank < first_rank + len(hits)
    )
    if [s.photo for s in existing] != [photo for photo, _ in hits]:
        raise RankConflictError(
            f"query {query_id} already shows other photos from rank {first_rank}"
        )
    return existing


def get_shown_photos(session: Session, query_id: int) -> tuple[Shown, ...]:
    """The photos shown for a query, by rank."""
    rows = session.execute(
        select(ShownPhoto.id, ShownPhoto.rank, ShownPhoto.photo, ShownPhoto.score)
        .where(ShownPhoto.query_id == query_id)
        .order_by(ShownPhoto.rank)
    )
    return tuple(
        Shown(id=r.id, query_id=query_id, rank=r.rank, photo=r.photo, score=r.score) for r in rows
    )


@dataclass(frozen=True)
class QueryInfo:
    """What the bot needs to page a logged query again ("more"): who, what kind, what text."""

    id: int
    user_id: int
    kind: str
    text: str
    language: str | None
    refused: bool


def get_query(session: Session, query_id: int) -> QueryInfo:
    """The logged query `query_id`; raises `UnknownQueryError` when there is none."""
    row = session.execute(
        select(Query.user_id, Query.kind, Query.text, Query.language, Query.refused).where(
            Query.id == query_id
        )
    ).one_or_none()
    if row is None:
        raise UnknownQueryError(f"no query {query_id}")
    return QueryInfo(
        id=query_id,
        user_id=row.user_id,
        kind=row.kind,
        text=row.text,
        language=row.language,
        refused=row.refused,
    )


# ---------------------------------------------------------------------------------------------
# Votes


def _check_owner(session: Session, *, user_id: int, shown_photo_id: int) -> None:
    owner = session.execute(
        select(Query.user_id)
        .join(ShownPhoto, ShownPhoto.query_id == Query.id)
        .where(ShownPhoto.id == shown_photo_id)
    ).scalar_one_or_none()
    if owner is None:
        raise UnknownShownPhotoError(f"no shown photo {shown_photo_id}")
    if owner != user_id:
        raise NotQueryOwnerError(f"shown photo {shown_photo_id} belongs to another user's query")


def _check_vote(vote: int | None) -> None:
    if vote is not None and vote not in VALID_VOTES:
        raise ValueError(f"vote must be +1, -1 or None, not {vote!r}")


def set_vote(
    session: Session,
    *,
    user_id: int,
    shown_photo_id: int,
    vote: int | None,
    now: datetime | None = None,
) -> VoteResult:
    """Make the user's vote on a shown photo `vote` (+1, -1, or None to withdraw it).

    Idempotent: a double tap, a retried callback or a second device sending the same target
    state changes nothing the second time (not even `updated_at`). Withdrawing a vote that
    does not exist is a no-op and leaves no row.
    """
    _check_vote(vote)
    _check_owner(session, user_id=user_id, shown_photo_id=shown_photo_id)
    now = now or utcnow()
    key = (Feedback.shown_photo_id == shown_photo_id) & (Feedback.user_id == user_id)
    if vote is None:
        changed = session.execute(
            update(Feedback)
            .where(key, Feedback.vote.is_not(None))
            .values(vote=None, updated_at=now)
            .returning(Feedback.user_id)
        ).first()
        return VoteResult(shown_photo_id=shown_photo_id, vote=None, changed=changed is not None)
    stmt = _dialect_insert(session, Feedback).values(
        shown_photo_id=shown_photo_id, user_id=user_id, vote=vote, created_at=now, updated_at=now
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[Feedback.shown_photo_id, Feedback.user_id],
        set_={"vote": excluded.vote, "updated_at": excluded.updated_at},
        where=Feedback.vote.is_distinct_from(excluded.vote),
    ).returning(Feedback.vote)
    written = session.execute(stmt).first()
    return VoteResult(shown_photo_id=shown_photo_id, vote=vote, changed=written is not None)


def toggle_vote(
    session: Session,
    *,
    user_id: int,
    shown_photo_id: int,
    vote: int,
    now: datetime | None = None,
) -> VoteResult:
    """Press a vote button: set `vote`, or withdraw it when it is the current vote already.

    One atomic statement, so two concurrent presses toggle twice rather than losing one.
    Not idempotent by nature (a retried toggle toggles back); for retry-safe callbacks put the
    target state in the callback data and use `set_vote`.
    """
    if vote not in VALID_VOTES:
        raise ValueError(f"vote must be +1 or -1, not {vote!r}")
    _check_owner(session, user_id=user_id, shown_photo_id=shown_photo_id)
    now = now or utcnow()
    stmt = _dialect_insert(session, Feedback).values(
        shown_photo_id=shown_photo_id, user_id=user_id, vote=vote, created_at=now, updated_at=now
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[Feedback.shown_photo_id, Feedback.user_id],
        set_={
            "vote": case((Feedback.vote == excluded.vote, null()), else_=excluded.vote),
            "updated_at": excluded.updated_at,
        },
    ).returning(Feedback.vote)
    new_vote = session.execute(stmt).scalar_one()
    return VoteResult(shown_photo_id=shown_photo_id, vote=new_vote, changed=True)


def get_vote(session: Session, *, user_id: int, shown_photo_id: int) -> int | None:
    return session.execute(
        select(Feedback.vote).where(
            Feedback.shown_photo_id == shown_photo_id, Feedback.user_id == user_id
        )
    ).scalar_one_or_none()


def get_votes(session: Session, *, user_id: int, query_id: int) -> dict[int, int]:
    """The user's current votes on a query's photos, as {shown_photo_id: +1/-1} (for keyboards)."""
    rows = session.execute(
        select(Feedback.shown_photo_id, Feedback.vote)
        .join(ShownPhoto, ShownPhoto.id == Feedback.shown_photo_id)
        .where(
            ShownPhoto.query_id == query_id,
            Feedback.user_id == user_id,
            Feedback.vote.is_not(None),
        )
    )
    return {row.shown_photo_id: row.vote for row in rows}


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class ReportResult:
    """A stored report: the photo it names (for the moderation block) and whether it is new."""

    shown_photo_id: int
    photo: str
    new: bool


def report_photo(
    session: Session, *, user_id: int, query_id: int, rank: int, now: datetime | None = None
) -> ReportResult:
    """Record that the user reports photo `rank` of their query `query_id` as showing a child.

    Only the query's owner may report its photos (the photo is named by the log, never by the
    client). Idempotent: a second press keeps the first row and its time.
    """
    row = session.execute(
        select(ShownPhoto.id, ShownPhoto.photo).where(
            ShownPhoto.query_id == query_id, ShownPhoto.rank == rank
        )
    ).one_or_none()
    if row is None:
        raise UnknownShownPhotoError(f"query {query_id} has no rank {rank}")
    _check_owner(session, user_id=user_id, shown_photo_id=row.id)
    stmt = (
        _dialect_insert(session, Report)
        .values(shown_photo_id=row.id, user_id=user_id, created_at=now or utcnow())
        .on_conflict_do_nothing(index_elements=[Report.shown_photo_id, Report.user_id])
        .returning(Report.user_id)
    )
    written = session.execute(stmt).first()
    return ReportResult(shown_photo_id=row.id, photo=row.photo, new=written is not None)


# ---------------------------------------------------------------------------------------------
# Telegram file_id cache


def get_file_ids(
    session: Session, *, bot_id: int, fingerprints: Mapping[str, str]
) -> dict[str, str]:
    """Cached file ids for the photos of an album, {photo: file_id}; misses are left out.

    `fingerprints` maps each photo to the fingerprint of its file now; an entry recorded for
    another fingerprint (the photo was replaced) is a miss.
    """
    if not fingerprints:
        return {}
    rows = session.execute(
        select(PhotoFileId.photo, PhotoFileId.fingerprint, PhotoFileId.file_id).where(
            PhotoFileId.bot_id == bot_id, PhotoFileId.photo.in_(list(fingerprints))
        )
    )
    return {r.photo: r.file_id for r in rows if fingerprints[r.photo] == r.fingerprint}


def get_file_id(session: Session, *, bot_id: int, photo: str, fingerprint: str) -> str | None:
    return get_file_ids(session, bot_id=bot_id, fingerprints={photo: fingerprint}).get(photo)


def put_file_id(
    session: Session,
    *,
    bot_id: int,
    photo: str,
    fingerprint: str,
    file_id: str,
    file_unique_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Remember the file id Telegram gave an uploaded photo (replacing any older one)."""
    now = now or utcnow()
    stmt = _dialect_insert(session, PhotoFileId).values(
        bot_id=bot_id,
        photo=photo,
        fingerprint=fingerprint,
        file_id=file_id,
        file_unique_id=file_unique_id,
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[PhotoFileId.bot_id, PhotoFileId.photo],
        set_={
            "fingerprint": stmt.excluded.fingerprint,
            "file_id": stmt.excluded.file_id,
            "file_unique_id": stmt.excluded.file_unique_id,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt)


def forget_file_id(session: Session, *, bot_id: int, photo: str) -> bool:
    """Drop a cached file id Telegram no longer accepts; True when there was one."""
    deleted = session.execute(
        delete(PhotoFileId)
        .where(PhotoFileId.bot_id == bot_id, PhotoFileId.photo == photo)
        .returning(literal(1))
    ).first()
    return deleted is not None
