"""A process logging queries is killed with SIGKILL mid-stream; nothing committed is lost.

After the kill (and a restart: the bot's start-up migration check, then new writes), every
query the child reported as committed is present with all its shown photos, no query has only
part of its photos, and the query that was mid-transaction is absent. Twice per backend: once
killed at full speed (wherever it happens to be), once killed deterministically inside a
transaction, between writing the query row and writing its photos.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import defaultdict

import pytest
from sqlalchemy import text

from bot.storage import TelegramUser, log_query
from bot.storage.database import make_engine, make_session_factory
from bot.storage.migrate import upgrade_to_head
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env
from tests.storage.kill_child import photos_for

CHILD = REPO_ROOT / "tests" / "storage" / "kill_child.py"
COMMITS_BEFORE_KILL = 60
PAUSE_AT = 45


def run_and_kill(url: str, *, pause: bool) -> tuple[dict[int, tuple[int, int]], int | None]:
    """Start the child, kill it; returns {i: (query_id, n_photos)} it reported, and the i it
    was paused inside (None at full speed)."""
    args = [PYTHON, str(CHILD), url] + (["--pause-at", str(PAUSE_AT)] if pause else [])
    child = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, child.kill)  # never hang the suite
    watchdog.start()
    committed: dict[int, tuple[int, int]] = {}
    inside: int | None = None
    try:
        assert child.stdout is not None
        for line in child.stdout:
            kind, *fields = line.split()
            if kind == "committed":
                query_id, i, n = map(int, fields)
                committed[i] = (query_id, n)
                if not pause and len(committed) >= COMMITS_BEFORE_KILL:
                    child.send_signal(signal.SIGKILL)
                    break
            elif kind == "inside":
                inside = int(fields[0])
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=30)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    assert child.returncode == -signal.SIGKILL, f"child ended otherwise: {stderr}"
    return committed, inside


@pytest.mark.parametrize("moment", ["full-speed", "inside-transaction"])
def test_sigkill_loses_no_committed_query(db_url: str, moment: str) -> None:
    committed, inside = run_and_kill(db_url, pause=moment == "inside-transaction")
    assert len(committed) >= (PAUSE_AT if inside is not None else COMMITS_BEFORE_KILL)

    upgrade_to_head(db_url)  # what the bot does when it starts again
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            queries = {
                row.id: row.text for row in connection.execute(text("SELECT id, text FROM queries"))
            }
            photos: dict[int, list[tuple[int, str, float]]] = defaultdict(list)
            for row in connection.execute(
                text("SELECT query_id, rank, photo, score FROM shown_photos ORDER BY rank")
            ):
                photos[row.query_id].append((row.rank, row.photo, row.score))
            n_results: dict[int, int] = dict(
                connection.execute(text("SELECT id, n_results FROM queries")).all()
            )

        by_i = {int(text_.rsplit(" ", 1)[1]): query_id for query_id, text_ in queries.items()}
        for i, (query_id, n) in committed.items():
            assert by_i.get(i) == query_id, f"committed query {i} is missing"
            assert len(photos[query_id]) == n
        for i, query_id in by_i.items():  # every stored query is whole, none is half
            want = [(rank, photo, score) for rank, (photo, score) in enumerate(photos_for(i), 1)]
            assert photos[query_id] == want, f"query {i} has {len(photos[query_id])} photos"
            assert n_results[query_id] == len(want)
        assert set(photos) <= set(queries)
        assert set(by_i) - set(committed) <= {max(committed) + 1}  # at most the one in flight
        if inside is not None:
            assert inside not in by_i, "the killed transaction's query was kept"

        sessions = make_session_factory(engine)  # and the database takes writes again
        with sessions.begin() as session:
            after = log_query(
                session,
                user=TelegramUser(9_000),
                chat_id=9_000,
                text="after restart",
                model_version="m@1",
                latency_ms=1.0,
                hits=[("x.jpg", 0.5)],
            )
        assert after.id not in queries
    finally:
        engine.dispose()
