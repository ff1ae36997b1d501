"""Statistics for the admins' `/stats`: counts, the 👍/👎 split, latency percentiles, top queries.

Everything is computed in the database with portable SQL (no `percentile_cont`, which SQLite
lacks), so the numbers are the same on both backends and nothing scales with the table in
Python memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from bot.storage.exports import time_window
from bot.storage.models import VOTE_DOWN, VOTE_UP, Feedback, Query, Report


@dataclass(frozen=True)
class Stats:
    """Activity in a time window (queries by their time, votes by the time they were cast)."""

    users: int  # distinct users who queried
    queries: int
    refused: int
    photo_queries: int
    shown: int  # photos shown
    votes_up: int
    votes_down: int
    latency_p50_ms: float | None  # over queries that were searched (not refused)
    latency_p95_ms: float | None
    top_queries: tuple[tuple[str, int], ...]  # text queries, most frequent first
    reports: int = 0  # 🚫 presses: shown photos reported as showing a child


def _percentile(session: Session, where: ColumnElement[bool], count: int, p: float) -> float | None:
    """Nearest-rank percentile: the smallest latency with at least p of the values at or below."""
    if count == 0:
        return None
    offset = max(math.ceil(p * count) - 1, 0)
    return session.execute(
        select(Query.latency_ms).where(where).order_by(Query.latency_ms).limit(1).offset(offset)
    ).scalar_one()


def get_stats(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    top: int = 10,
) -> Stats:
    in_window = time_window(Query.created_at, since, until)
    counts = session.execute(
        select(
            func.count(func.distinct(Query.user_id)),
            func.count(),
            func.coalesce(func.sum(case((Query.refused, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Query.kind == "photo", 1), else_=0)), 0),
            func.coalesce(func.sum(Query.n_results), 0),
        ).where(in_window)
    ).one()
    votes = session.execute(
        select(Feedback.vote, func.count())
        .where(time_window(Feedback.updated_at, since, until), Feedback.vote.is_not(None))
        .group_by(Feedback.vote)
    ).all()
    by_vote = {row[0]: row[1] for row in votes}
    reports = session.execute(
        select(func.count()).select_from(Report).where(time_window(Report.created_at, since, until))
    ).scalar_one()
    searched = and_(in_window, Query.refused.is_(False))
    n_searched = session.execute(select(func.count()).where(searched)).scalar_one()
    top_rows = session.execute(
        select(Query.text, func.count().label("n"))
        .where(searched, Query.kind == "text")
        .group_by(Query.text)
        .order_by(func.count().desc(), Query.text)
        .limit(top)
    ).all()
    return Stats(
        users=counts[0],
        queries=counts[1],
        refused=int(counts[2]),
        photo_queries=int(counts[3]),
        shown=int(counts[4]),
        votes_up=by_vote.get(VOTE_UP, 0),
        votes_down=by_vote.get(VOTE_DOWN, 0),
        latency_p50_ms=_percentile(session, searched, n_searched, 0.50),
        latency_p95_ms=_percentile(session, searched, n_searched, 0.95),
        top_queries=tuple((row.text, row.n) for row in top_rows),
        reports=reports,
    )
