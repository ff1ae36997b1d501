"""Child process for test_kill: logs queries until it is killed with SIGKILL.

Prints `committed <query_id> <i> <n_photos>` after each commit returns. With `--pause-at I`
it stops inside the transaction of query I, right after the query row was written and before
its photos are, prints `inside <i>` and waits to be killed: the worst moment for "no query
with half its photos".

    python tests/storage/kill_child.py URL [--pause-at I]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sqlalchemy import event

from bot.storage import TelegramUser, log_query
from bot.storage.database import make_engine, make_session_factory


def photos_for(i: int) -> list[tuple[str, float]]:
    """Query i shows 1 + i % 10 photos; the parent recomputes this to check completeness."""
    return [(f"kill/{i}/{rank}.jpg", 1.0 - rank / 100) for rank in range(1, 2 + i % 10)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--pause-at", type=int, default=None)
    parser.add_argument("--start", type=int, default=0)
    args = parser.parse_args()
    engine = make_engine(args.url)
    sessions = make_session_factory(engine)
    current = {"i": -1}

    @event.listens_for(engine, "after_cursor_execute")
    def _pause(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if current["i"] == args.pause_at and statement.lstrip().upper().startswith(
            "INSERT INTO QUERIES"
        ):
            print(f"inside {current['i']}", flush=True)
            time.sleep(600)

    i = args.start
    while True:
        current["i"] = i
        with sessions.begin() as session:
            logged = log_query(
                session,
                user=TelegramUser(id=9_000 + i % 7, username=f"user{i % 7}"),
                chat_id=9_000 + i % 7,
                text=f"kill-test query {i}",
                model_version="m@1",
                latency_ms=float(i % 50),
                hits=photos_for(i),
            )
        print(f"committed {logged.id} {i} {len(logged.shown)}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
