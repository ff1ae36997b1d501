"""Storage benchmarks (`make bench`): logging throughput and a 1M-row export.

Prints figures, asserts none of the timings (machines differ). Runs on SQLite, and on
PostgreSQL when TEST_DATABASE_URL is set. The export runs as `python -m bot export` in a child
process whose peak RSS comes from `wait4`, so the figure is the whole process's memory
(interpreter and libraries included); exporting 0, 100k and 1M rows side by side shows whether
memory grows with the row count (it should not: rows are streamed in batches).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.storage import TelegramUser, log_query, set_vote
from bot.storage.database import make_engine, make_session_factory
from tests.conftest import PYTHON, REPO_ROOT, subprocess_env

pytestmark = pytest.mark.bench

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
EXPORT_ROWS = 1_000_000
EXPORT_USERS = 1_000
START = datetime(2024, 1, 1, tzinfo=UTC)
HITS = [(f"bench/photo_{i:02d}.jpg", 1.0 - i / 20) for i in range(10)]


def median_rate(run: Callable[[], int]) -> tuple[float, float]:
    """Median and spread (max - min) of operations per second over REPEATS runs."""
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates), max(rates) - min(rates)


def log_many(sessions: sessionmaker[Session], count: int, user: int) -> list[int]:
    shown = []
    for i in range(count):
        with sessions.begin() as session:
            logged = log_query(
                session,
                user=TelegramUser(user, "bench", "en"),
                chat_id=user,
                text=f"bench query {i}",
                model_version="bench@1",
                latency_ms=10.0,
                hits=HITS,
            )
        shown.append(logged.shown[0].id)
    return shown


def bench_logging(engine: Engine) -> list[tuple[str, float, float]]:
    sessions = make_session_factory(engine)
    results = []

    single = 300
    results.append(
        (
            "log_query, 1 thread (10 photos each)",
            *median_rate(lambda: len(log_many(sessions, single, 1))),
        )
    )

    threads, per_thread = 8, 60

    def parallel() -> int:
        workers = [
            threading.Thread(target=log_many, args=(sessions, per_thread, 100 + t))
            for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return threads * per_thread

    results.append((f"log_query, {threads} threads", *median_rate(parallel)))

    targets = log_many(sessions, 300, 2)

    def votes() -> int:
        for i, shown_id in enumerate(targets):
            with sessions.begin() as session:
                set_vote(session, user_id=2, shown_photo_id=shown_id, vote=1 if i % 2 else -1)
            with sessions.begin() as session:
                set_vote(session, user_id=2, shown_photo_id=shown_id, vote=None)
        return 2 * len(targets)

    results.append(("set_vote (change + withdraw)", *median_rate(votes)))
    return results


def fill_queries(engine: Engine) -> None:
    """EXPORT_ROWS queries, one a second from START, generated inside the database."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM queries"))
        if engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "INSERT OR IGNORE INTO users (id, username, language, first_seen, last_seen) "
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :u) "
                    "SELECT 1000 + i, 'user' || i, 'en', '2024-01-01 00:00:00.000000', "
                    "'2024-01-01 00:00:00.000000' FROM n"
                ),
                {"u": EXPORT_USERS - 1},
            )
            connection.execute(
                text(
                    "INSERT INTO queries (user_id, chat_id, kind, text, language, refused, "
                    "model_version, n_results, latency_ms, created_at) "
                    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :n) "
                    "SELECT 1000 + i % :u, 1000 + i % :u, 'text', "
                    "'a dog running on the beach at sunset, query ' || i, 'en', 0, "
                    "'dual-lite0-minilm-e5@1.0.0', 10, (i % 500) * 0.5, "
                    "strftime('%Y-%m-%d %H:%M:%S', '2024-01-01', '+' || i || ' seconds') "
                    "|| '.000000' FROM n"
                ),
                {"n": EXPORT_ROWS - 1, "u": EXPORT_USERS},
            )
        else:
            connection.execute(
                text(
                    "INSERT INTO users (id, username, language, first_seen, last_seen) "
                    "SELECT 1000 + i, 'user' || i, 'en', :t, :t "
                    "FROM generate_series(0, :u) AS i ON CONFLICT DO NOTHING"
                ),
                {"u": EXPORT_USERS - 1, "t": START},
            )
            connection.execute(
                text(
                    "INSERT INTO queries (user_id, chat_id, kind, text, language, refused, "
                    "model_version, n_results, latency_ms, created_at) "
                    "SELECT 1000 + i % :u, 1000 + i % :u, 'text', "
                    "'a dog running on the beach at sunset, query ' || i, 'en', false, "
                    "'dual-lite0-minilm-e5@1.0.0', 10, (i % 500) * 0.5, "
                    "CAST(:t AS timestamptz) + i * interval '1 second' "
                    "FROM generate_series(0, :n) AS i"
                ),
                {"n": EXPORT_ROWS - 1, "u": EXPORT_USERS, "t": START},
            )
            connection.execute(text("ANALYZE queries"))


def timed_export(url: str, work: Path, fmt: str, rows: int) -> tuple[float, float, int]:
    """Run one export in a child; returns (seconds, peak RSS in MiB, output bytes)."""
    out = work / f"export.{fmt}"
    args = [PYTHON, "-m", "bot", "export", "queries", "--format", fmt, "-o", str(out)]
    if rows < EXPORT_ROWS:
        until = START + timedelta(seconds=rows)
        args += ["--until", until.isoformat()]
    started = time.perf_counter()
    child = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=subprocess_env(DATABASE_URL=url, DATA_DIR=str(work / "data")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = child.stderr.read().decode() if child.stderr else ""
    assert child.returncode == 0, stderr
    assert f"exported {rows} queries rows" in stderr, stderr
    size = out.stat().st_size
    out.unlink()
    return elapsed, usage.ru_maxrss / 1024, size


def test_storage_bench(db_url: str, tmp_path: Path) -> None:
    backend = make_url(db_url).get_backend_name()
    options: dict[str, Any] = {} if backend == "sqlite" else {"pool_size": 10}
    engine = make_engine(db_url, **options)
    try:
        logging_rows = bench_logging(engine)
        started = time.perf_counter()
        fill_queries(engine)
        fill_seconds = time.perf_counter() - started
    finally:
        engine.dispose()

    print(f"\n== storage bench: {backend} (median of {REPEATS}; spread = max - min) ==")
    print(f"{'operation':<40} {'per second':>12} {'spread':>10}")
    for name, rate, spread in logging_rows:
        print(f"{name:<40} {rate:>12.0f} {spread:>10.0f}")
    print(f"generated {EXPORT_ROWS:,} query rows in the database in {fill_seconds:.1f} s")

    print(
        f"{'export queries':<22} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'peak MiB':>9} {'MB':>7}"
    )
    plan = [("csv", 0), ("csv", 100_000), ("csv", EXPORT_ROWS)]
    plan += [("jsonl", EXPORT_ROWS), ("parquet", 100_000), ("parquet", EXPORT_ROWS)]
    for fmt, rows in plan:
        repeats = REPEATS if rows == EXPORT_ROWS and fmt == "csv" else 1
        runs = [timed_export(db_url, tmp_path, fmt, rows) for _ in range(repeats)]
        seconds = statistics.median(r[0] for r in runs)
        peak = statistics.median(r[1] for r in runs)
        size = runs[0][2] / 1e6
        rate = rows / seconds if rows else 0
        label = f"{fmt} (n={repeats})"
        print(f"{label:<22} {rows:>9,} {seconds:>8.2f} {rate:>9.0f} {peak:>9.1f} {size:>7.1f}")
