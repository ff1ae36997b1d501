"""Data-access functions on a real database (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from bot.storage import (
    LoggedQuery,
    NotQueryOwnerError,
    RankConflictError,
    TelegramUser,
    UnknownQueryError,
    UnknownShownPhotoError,
    append_shown_photos,
    forget_file_id,
    get_file_id,
    get_file_ids,
    get_shown_photos,
    get_stats,
    get_vote,
    get_votes,
    log_query,
    put_file_id,
    report_photo,
    set_vote,
    toggle_vote,
    upsert_user,
)
from bot.storage.models import Report

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ANN = TelegramUser(id=5_000_000_001, username="ann", language="en")
BOB = TelegramUser(id=2, username="bob", language="ru")
HITS = [("beach/dog.jpg", 0.91), ("beach/cat.jpg", 0.87), ("city/bus.jpg", 0.5)]

Sessions = sessionmaker[Session]


def log(sessions: Sessions, user: TelegramUser = ANN, **kwargs: object) -> LoggedQuery:
    params: dict[str, object] = {
        "chat_id": user.id,
        "text": "dog on a beach",
        "model_version": "dual-lite0-minilm-e5@1.0.0",
        "latency_ms": 42.0,
        "hits": HITS,
        "now": T0,
    }
    params.update(kwargs)
    with sessions.begin() as session:
        return log_query(session, user=user, **params)  # type: ignore[arg-type]


def rows(sessions: Sessions, sql: str) -> list[tuple[object, ...]]:
    with sessions() as session:
        return [tuple(row) for row in session.execute(text(sql))]


# --- queries --------------------------------------------------------------------------------


def test_log_query_with_photos(sessions: Sessions) -> None:
    logged = log(sessions)
    assert logged.created_at == T0
    assert [(s.rank, s.photo, s.score) for s in logged.shown] == [
        (1, "beach/dog.jpg", 0.91),
        (2, "beach/cat.jpg", 0.87),
        (3, "city/bus.jpg", 0.5),
    ]
    assert len({s.id for s in logged.shown}) == 3
    with sessions() as session:
        assert get_shown_photos(session, logged.id) == logged.shown
    assert rows(sessions, "SELECT kind, text, refused, n_results, model_version FROM queries") == [
        ("text", "dog on a beach", False, 3, "dual-lite0-minilm-e5@1.0.0")
    ]


def test_refused_and_photo_queries(sessions: Sessions) -> None:
    refused = log(sessions, text="forbidden", hits=[], refused=True, refusal_reason="children")
    assert refused.shown == ()
    photo = log(
        sessions,
        kind="photo",
        text="AgADfile_unique",
        language="ru",
        withheld=2,
        filter_version="lex:ab12/thr:0.80",
    )
    assert len(photo.shown) == 3
    assert rows(
        sessions,
        "SELECT kind, refused, refusal_reason, n_results, withheld, filter_version "
        "FROM queries ORDER BY id",
    ) == [
        ("text", True, "children", 0, None, None),
        ("photo", False, None, 3, 2, "lex:ab12/thr:0.80"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"refused": True, "refusal_reason": "x"},  # refused but with photos
        {"refusal_reason": "x"},  # reason without refusal
        {"kind": "voice"},
    ],
)
def test_log_query_rejects_inconsistent_input(
    sessions: Sessions, kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        log(sessions, ANN, **kwargs)
    assert rows(sessions, "SELECT count(*) FROM queries") == [(0,)]


def test_naive_datetime_is_a_programming_error(sessions: Sessions) -> None:
    with pytest.raises(StatementError):
        log(sessions, now=datetime(2024, 1, 1))


def test_query_and_photos_commit_together(sessions: Sessions) -> None:
    with pytest.raises(RuntimeError), sessions.begin() as session:
        log_query(
            session, user=ANN, chat_id=1, text="t", model_version="m", latency_ms=1, hits=HITS
        )
        raise RuntimeError("crash before commit")
    assert rows(sessions, "SELECT count(*) FROM queries") == [(0,)]
    assert rows(sessions, "SELECT count(*) FROM shown_photos") == [(0,)]


def test_users_first_and_last_seen(sessions: Sessions) -> None:
    log(sessions, now=T0)
    log(sessions, user=TelegramUser(ANN.id, "ann2", None), now=T0 + timedelta(hours=1))
    with sessions.begin() as session:  # an older, delayed update does not move last_seen back
        upsert_user(session, TelegramUser(ANN.id, "ann2", None), now=T0 - timedelta(days=1))
    got = rows(sessions, "SELECT id, username, language, first_seen, last_seen FROM users")
    assert len(got) == 1
    user_id, username, language, _, _ = got[0]
    assert (user_id, username, language) == (ANN.id, "ann2", "en")
    from sqlalchemy import select

    from bot.storage.models import User

    with sessions() as session:
        user = session.execute(select(User)).scalar_one()
        assert user.first_seen == T0
        assert user.last_seen == T0 + timedelta(hours=1)
        assert user.last_seen.tzinfo is UTC


def test_deleting_a_user_cascades(sessions: Sessions) -> None:
    logged = log(sessions)
    with sessions.begin() as session:
        set_vote(session, user_id=ANN.id, shown_photo_id=logged.shown[0].id, vote=1)
    with sessions.begin() as session:
        session.execute(text("DELETE FROM users"))
    for table in ("queries", "shown_photos", "feedback"):
        assert rows(sessions, f"SELECT count(*) FROM {table}") == [(0,)]


def test_foreign_keys_are_enforced(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO shown_photos (query_id, rank, photo, score) "
                "VALUES (999, 1, 'x.jpg', 0.1)"
            )
        )


# --- "more": appending pages ----------------------------------------------------------------


def test_append_continues_ranks(sessions: Sessions) -> None:
    logged = log(sessions)
    with sessions.begin() as session:
        page = append_shown_photos(
            session, query_id=logged.id, user_id=ANN.id, hits=[("a.jpg", 0.4), ("b.jpg", 0.3)]
        )
    assert [(s.rank, s.photo) for s in page] == [(4, "a.jpg"), (5, "b.jpg")]
    with sessions.begin() as session:  # a retried "more" with the same page changes nothing
        again = append_shown_photos(
            session,
            query_id=logged.id,
            user_id=ANN.id,
            hits=[("a.jpg", 0.4), ("b.jpg", 0.3)],
            start_rank=4,
        )
    assert again == page
    assert rows(sessions, "SELECT n_results FROM queries") == [(5,)]
    assert rows(sessions, "SELECT count(*) FROM shown_photos") == [(5,)]


def test_append_refusals(sessions: Sessions) -> None:
    logged = log(sessions)
    with sessions.begin() as session:
        with pytest.raises(NotQueryOwnerError):
            append_shown_photos(session, query_id=logged.id, user_id=BOB.id, hits=[("a", 1.0)])
        with pytest.raises(UnknownQueryError):
            append_shown_photos(session, query_id=10**9, user_id=ANN.id, hits=[("a", 1.0)])
        with pytest.raises(RankConflictError):
            append_shown_photos(
                session, query_id=logged.id, user_id=ANN.id, hits=[("zzz", 1.0)], start_rank=2
            )
        with pytest.raises(ValueError):
            append_shown_photos(
                session, query_id=logged.id, user_id=ANN.id, hits=[("a", 1.0)], start_rank=9
            )
    assert rows(sessions, "SELECT count(*) FROM shown_photos") == [(3,)]


# --- votes ----------------------------------------------------------------------------------


def test_set_vote_is_idempotent_changeable_withdrawable(sessions: Sessions) -> None:
    shown = log(sessions).shown[0].id

    def vote(value: int | None, at: datetime) -> tuple[int | None, bool]:
        with sessions.begin() as session:
            result = set_vote(session, user_id=ANN.id, shown_photo_id=shown, vote=value, now=at)
        return result.vote, result.changed

    assert vote(None, T0) == (None, False)  # withdrawing nothing leaves no row
    assert rows(sessions, "SELECT count(*) FROM feedback") == [(0,)]
    assert vote(1, T0 + timedelta(seconds=1)) == (1, True)
    assert vote(1, T0 + timedelta(seconds=2)) == (1, False)  # double tap
    assert vote(-1, T0 + timedelta(seconds=3)) == (-1, True)  # change
    assert vote(None, T0 + timedelta(seconds=4)) == (None, True)  # withdraw
    assert vote(None, T0 + timedelta(seconds=5)) == (None, False)  # retried withdraw
    from sqlalchemy import select

    from bot.storage.models import Feedback

    with sessions() as session:
        row = session.execute(select(Feedback)).scalar_one()
        assert (row.vote, row.created_at, row.updated_at) == (
            None,
            T0 + timedelta(seconds=1),
            T0 + timedelta(seconds=4),
        )


def test_toggle_vote(sessions: Sessions) -> None:
    shown = log(sessions).shown[1].id
    states = []
    for value in (1, 1, -1, 1, -1, -1):
        with sessions.begin() as session:
            states.append(
                toggle_vote(session, user_id=ANN.id, shown_photo_id=shown, vote=value).vote
            )
    assert states == [1, None, -1, 1, -1, None]
    with sessions() as session:
        assert get_vote(session, user_id=ANN.id, shown_photo_id=shown) is None


def test_votes_only_from_the_query_owner(sessions: Sessions) -> None:
    shown = log(sessions).shown[0].id
    log(sessions, user=BOB)
    with sessions.begin() as session:
        with pytest.raises(NotQueryOwnerError):
            set_vote(session, user_id=BOB.id, shown_photo_id=shown, vote=1)
        with pytest.raises(NotQueryOwnerError):
            toggle_vote(session, user_id=BOB.id, shown_photo_id=shown, vote=1)
        with pytest.raises(UnknownShownPhotoError):
            set_vote(session, user_id=ANN.id, shown_photo_id=10**9, vote=1)
        with pytest.raises(ValueError):
            set_vote(session, user_id=ANN.id, shown_photo_id=shown, vote=2)
        with pytest.raises(ValueError):
            toggle_vote(session, user_id=ANN.id, shown_photo_id=shown, vote=0)
    assert rows(sessions, "SELECT count(*) FROM feedback") == [(0,)]


def test_report_photo_is_idempotent_and_owner_only(sessions: Sessions) -> None:
    logged = log(sessions)
    second = logged.shown[1]
    with sessions.begin() as session:
        first = report_photo(session, user_id=ANN.id, query_id=logged.id, rank=2, now=T0)
    assert (first.shown_photo_id, first.photo, first.new) == (second.id, second.photo, True)
    with sessions.begin() as session:
        again = report_photo(session, user_id=ANN.id, query_id=logged.id, rank=2,
                             now=T0 + timedelta(seconds=5))
    assert not again.new
    assert rows(sessions, "SELECT shown_photo_id, user_id FROM reports") == [(second.id, ANN.id)]
    with sessions() as session:
        assert session.execute(select(Report.created_at)).scalar_one() == T0  # the first press

    log(sessions, user=BOB)
    with sessions.begin() as session:
        with pytest.raises(NotQueryOwnerError):
            report_photo(session, user_id=BOB.id, query_id=logged.id, rank=1)
        with pytest.raises(UnknownShownPhotoError):
            report_photo(session, user_id=ANN.id, query_id=logged.id, rank=99)
    assert rows(sessions, "SELECT count(*) FROM reports") == [(1,)]


def test_get_votes_for_keyboard(sessions: Sessions) -> None:
    logged = log(sessions)
    a, b, c = (s.id for s in logged.shown)
    with sessions.begin() as session:
        set_vote(session, user_id=ANN.id, shown_photo_id=a, vote=1)
        set_vote(session, user_id=ANN.id, shown_photo_id=b, vote=-1)
        set_vote(session, user_id=ANN.id, shown_photo_id=c, vote=1)
        set_vote(session, user_id=ANN.id, shown_photo_id=c, vote=None)
    with sessions() as session:
        assert get_votes(session, user_id=ANN.id, query_id=logged.id) == {a: 1, b: -1}
        assert get_votes(session, user_id=BOB.id, query_id=logged.id) == {}


# --- file id cache --------------------------------------------------------------------------


def test_file_id_cache(sessions: Sessions) -> None:
    with sessions.begin() as session:
        assert get_file_id(session, bot_id=1, photo="a.jpg", fingerprint="v1") is None
        put_file_id(session, bot_id=1, photo="a.jpg", fingerprint="v1", file_id="F1")
        put_file_id(session, bot_id=1, photo="b.jpg", fingerprint="v1", file_id="F2")
    with sessions.begin() as session:
        assert get_file_ids(
            session, bot_id=1, fingerprints={"a.jpg": "v1", "b.jpg": "v2", "c.jpg": "v1"}
        ) == {"a.jpg": "F1"}
        assert get_file_id(session, bot_id=2, photo="a.jpg", fingerprint="v1") is None
        put_file_id(session, bot_id=1, photo="b.jpg", fingerprint="v2", file_id="F3")
        assert get_file_id(session, bot_id=1, photo="b.jpg", fingerprint="v2") == "F3"
        assert forget_file_id(session, bot_id=1, photo="a.jpg")
        assert not forget_file_id(session, bot_id=1, photo="a.jpg")
        assert get_file_ids(session, bot_id=1, fingerprints={}) == {}
    assert rows(sessions, "SELECT count(*) FROM photo_file_ids") == [(1,)]


# --- statistics -----------------------------------------------------------------------------


def test_stats(sessions: Sessions) -> None:
    for i, latency in enumerate([10.0, 20.0, 30.0, 40.0, 1000.0]):
        logged = log(
            sessions,
            text="dogs" if i < 3 else f"cats {i}",
            latency_ms=latency,
            now=T0 + timedelta(minutes=i),
        )
    log(sessions, user=BOB, text="bad", hits=[], refused=True, latency_ms=1.0)
    log(sessions, user=BOB, kind="photo", text="AgAD", latency_ms=50.0)
    with sessions.begin() as session:
        set_vote(session, user_id=ANN.id, shown_photo_id=logged.shown[0].id, vote=1, now=T0)
        set_vote(session, user_id=ANN.id, shown_photo_id=logged.shown[1].id, vote=1, now=T0)
        set_vote(session, user_id=ANN.id, shown_photo_id=logged.shown[2].id, vote=-1, now=T0)
        report_photo(session, user_id=ANN.id, query_id=logged.id, rank=2,
                     now=T0 + timedelta(minutes=5))
    with sessions() as session:
        stats = get_stats(session, top=2)
        assert stats.reports == 1
        assert (stats.users, stats.queries, stats.refused, stats.photo_queries) == (2, 7, 1, 1)
        assert stats.shown == 18
        assert (stats.votes_up, stats.votes_down) == (2, 1)
        # searched (not refused) latencies: 10, 20, 30, 40, 50 (photo query), 1000
        assert stats.latency_p50_ms == 30.0
        assert stats.latency_p95_ms == 1000.0
        assert stats.top_queries == (("dogs", 3), ("cats 3", 1))
        window = get_stats(
            session, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
        )
        assert (window.queries, window.votes_up, window.top_queries) == (2, 0, (("dogs", 2),))
        assert window.reports == 0  # reported at minute 5, outside the window
        empty = get_stats(session, since=T0 + timedelta(days=9))
        assert empty.queries == 0 and empty.latency_p50_ms is None and empty.top_queries == ()
