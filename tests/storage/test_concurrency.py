"""50 simulated users × 20 votes each, interleaved, with changes, withdrawals and double taps.

The expected final feedback table is computed here, independently, by replaying each user's
script on a plain dict; the code under test only ever sees the script. Users run in parallel
threads (each user's own actions in order, as one phone sends them); some set-votes are sent
twice at the same moment from two threads (a double tap / two devices), and some actions are
forged onto another user's photo and must be refused without trace. Runs on PostgreSQL (the
case the issue names) and on SQLite.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.storage import NotQueryOwnerError, TelegramUser, log_query, set_vote, toggle_vote
from bot.storage.database import make_engine, make_session_factory

USERS = 50
VOTES_PER_USER = 20
PHOTOS_PER_USER = 6  # few photos per user, so votes on the same photo change and withdraw
SEED = 20240501


@dataclass(frozen=True)
class Action:
    op: str  # "set" (vote: +1/-1/None) or "toggle" (vote: +1/-1)
    photo: int  # index into the user's photos
    vote: int | None
    double: bool = False  # sent twice concurrently (set only: the same target state)
    forged_on: int | None = None  # another user whose photo this targets (must be refused)


def make_script(rng: random.Random, user: int) -> list[Action]:
    actions = []
    for _ in range(VOTES_PER_USER):
        photo = rng.randrange(PHOTOS_PER_USER)
        roll = rng.random()
        if roll < 0.05:
            other = rng.choice([u for u in range(USERS) if u != user])
            actions.append(Action("set", photo, 1, forged_on=other))
        elif roll < 0.55:
            vote = rng.choice([1, -1, None])
            actions.append(Action("set", photo, vote, double=rng.random() < 0.3))
        else:
            actions.append(Action("toggle", photo, rng.choice([1, -1])))
    return actions


def expected_state(scripts: list[list[Action]]) -> dict[tuple[int, int], int | None]:
    """Final (user, photo index) → vote, by replaying each script on a dict.

    A row exists once a vote was ever cast; withdrawing keeps it with None; withdrawing a vote
    that never existed creates nothing.
    """
    state: dict[tuple[int, int], int | None] = {}
    for user, script in enumerate(scripts):
        for action in script:
            if action.forged_on is not None:
                continue
            key = (user, action.photo)
            if action.op == "set":
                if action.vote is not None or key in state:
                    state[key] = action.vote
            else:
                state[key] = None if state.get(key) == action.vote else action.vote
    return state


def user_id(user: int) -> int:
    return 7_000_000_000 + user


def test_fifty_users_voting_at_once(db_url: str) -> None:
    rng = random.Random(SEED)
    scripts = [make_script(rng, user) for user in range(USERS)]
    assert sum(len(s) for s in scripts) == USERS * VOTES_PER_USER
    assert any(a.double for s in scripts for a in s)
    assert any(a.forged_on is not None for s in scripts for a in s)

    is_sqlite = make_url(db_url).get_backend_name() == "sqlite"
    pool_options: dict[str, Any] = {} if is_sqlite else {"pool_size": 40, "max_overflow": 0}
    engine = make_engine(db_url, **pool_options)
    sessions: sessionmaker[Session] = make_session_factory(engine)
    try:
        # Each user's query shows PHOTOS_PER_USER photos; remember their shown-photo ids.
        shown: list[list[int]] = []
        with sessions.begin() as session:
            for user in range(USERS):
                logged = log_query(
                    session,
                    user=TelegramUser(user_id(user)),
                    chat_id=user_id(user),
                    text=f"query of user {user}",
                    model_version="m@1",
                    latency_ms=1.0,
                    hits=[(f"u{user}/p{i}.jpg", 1.0 - i / 10) for i in range(PHOTOS_PER_USER)],
                )
                shown.append([s.id for s in logged.shown])

        start = threading.Barrier(USERS)
        failures: list[str] = []

        def perform(user: int, action: Action) -> int | None:
            owner = action.forged_on if action.forged_on is not None else user
            target = shown[owner][action.photo]
            with sessions.begin() as session:
                if action.op == "set":
                    return set_vote(
                        session, user_id=user_id(user), shown_photo_id=target, vote=action.vote
                    ).vote
                assert action.vote is not None
                return toggle_vote(
                    session, user_id=user_id(user), shown_photo_id=target, vote=action.vote
                ).vote

        def run_user(user: int) -> None:
            start.wait()
            mine: dict[int, int | None] = {}
            for action in scripts[user]:
                if action.forged_on is not None:
                    try:
                        perform(user, action)
                    except NotQueryOwnerError:
                        continue
                    failures.append(f"user {user}: forged vote accepted")
                    continue
                if action.double:
                    twin = threading.Thread(target=perform, args=(user, action))
                    twin.start()
                    got = perform(user, action)
                    twin.join()
                else:
                    got = perform(user, action)
                # What the bot would render must follow the user's own sequence exactly.
                if action.op == "set":
                    want = action.vote
                else:
                    want = None if mine.get(action.photo) == action.vote else action.vote
                mine[action.photo] = want
                if got != want:
                    failures.append(f"user {user}: {action} returned {got}, expected {want}")

        with ThreadPoolExecutor(max_workers=USERS) as pool:
            for future in [pool.submit(run_user, user) for user in range(USERS)]:
                future.result()
        assert failures == []

        with engine.connect() as connection:
            actual = {
                (row.user_id, row.shown_photo_id): row.vote
                for row in connection.execute(
                    text("SELECT user_id, shown_photo_id, vote FROM feedback")
                )
            }
    finally:
        engine.dispose()

    expected = {
        (user_id(user), shown[user][photo]): vote
        for (user, photo), vote in expected_state(scripts).items()
    }
    assert actual == expected
    assert len(expected) > USERS  # the script really exercises many rows
    assert any(v is None for v in expected.values())  # and withdrawals
