"""End to end: starting (what is missing is said in one line), stopping (SIGTERM/SIGINT → exit
0 with the updates in flight finished and confirmed), and the packaged default model."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.playground import FakeUser, StandInThread
from bot.storage import make_engine
from engine.search import SearchEngine
from tests.bot.conftest import Collection
from tests.bot.e2e import (
    RESULTS_PER_QUERY,
    TOKEN,
    BotProcess,
    bot_env,
    photos_of,
    rows,
    settle,
    wait_new,
)
from tests.conftest import REPO_ROOT, sqlite_url, subprocess_env

DEFAULT_MODEL_CONFIG = REPO_ROOT / "engine" / "models" / "dual-default" / "config.json"


def run_bot(
    env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot"], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_missing_token_is_one_clear_line(tmp_path: Path) -> None:
    env = subprocess_env()
    env.pop("TELEGRAM_BOT_TOKEN", None)
    result = run_bot(env, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: TELEGRAM_BOT_TOKEN is not set")
    assert not (tmp_path / "data").exists()  # nothing created before the check


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"RESULTS_PER_QUERY": "lots"}, "error: invalid setting RESULTS_PER_QUERY"),
        ({}, "error: set PHOTOS_DIR (the photos to search) or INDEX_DIR"),
    ],
)
def test_bad_settings_are_one_clear_line(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    env = subprocess_env(TELEGRAM_BOT_TOKEN=TOKEN, DATA_DIR=str(tmp_path / "data"), **settings)
    for name in ("PHOTOS_DIR", "INDEX_DIR", "MODEL"):
        env.pop(name, None)
    result = run_bot(env, tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert TOKEN not in result.stderr


def test_sigterm_finishes_updates_in_flight_then_exits_0(
    tmp_path: Path, collection: Collection
) -> None:
    """Three queries at once (two wait their turn, 1 s and 2 s): SIGTERM arrives while they
    are in flight, and every one is still answered, logged and confirmed before exit 0."""
    user = FakeUser(id=3001, first_name="Tom", language_code="en")
    url = sqlite_url(tmp_path / "data" / "bot.sqlite3")
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=tmp_path / "data", photos_dir=collection.photos,
                      index_dir=collection.index)
        bot = BotProcess.start(client, env, tmp_path / "bot.log")
        bot.wait_polling()
        sent = [client.send_text(user, f"a lighthouse {n}") for n in range(3)]
        client.wait_until(lambda: all(client.delivered_at(user.id, m) for m in sent), 30)
        bot.process.send_signal(signal.SIGTERM)
        code = bot.wait_exit(60, "SIGTERM")
        log = bot.log()
        assert code == 0, log
        messages = settle(client, user.id, quiet=0.3)
        assert sum(m.method == "sendMediaGroup" for m in messages) == 3, log
        assert client.pending_updates() == []  # all confirmed: none comes back at restart
    # The last query was still waiting for its turn when the signal came.
    stopping = log.index("SIGTERM: stopping after the updates in flight")
    assert log.rindex(f"user {user.id}: text query") > stopping, log
    assert TOKEN not in log and TOKEN.split(":")[1] not in log
    database = make_engine(url)
    try:
        assert rows(database, "SELECT count(*) FROM queries WHERE user_id = :u", u=user.id) == [
            (3,)]
    finally:
        database.dispose()


def test_sigint_during_start_up_exits_0(tmp_path: Path, collection: Collection) -> None:
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=tmp_path / "data", photos_dir=collection.photos,
                      index_dir=collection.index)
        bot = BotProcess.start(client, env, tmp_path / "bot.log")
        deadline = time.monotonic() + 60
        while "loading model" not in bot.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        bot.process.send_signal(signal.SIGINT)
        assert bot.wait_exit(60, "SIGINT during start-up") == 0, bot.log()


@pytest.mark.skipif(
    not DEFAULT_MODEL_CONFIG.exists(),
    reason="the packaged default model (engine/models/dual-default/config.json) is not "
    "trained yet",
)
def test_default_model_end_to_end(tmp_path: Path, collection: Collection) -> None:
    """MODEL unset: the bot uses the index's own model, here the packaged `dual:default`."""
    from engine.child_filter import ChildFilter
    from engine.encoders import load_encoder
    from engine.index import PhotoIndex, update_index
    from engine.legal import LegalFilter

    index_dir = tmp_path / "index"
    encoder = load_encoder("dual:default")
    update_index(collection.photos, index_dir, encoder, model_spec="dual:default",
                 progress=False)
    expected = SearchEngine(encoder, PhotoIndex.open(index_dir), LegalFilter.default(),
                            ChildFilter.off())  # as bot_env runs the bot
    user = FakeUser(id=3002, first_name="Dee", language_code="ru")
    query = "красная машина у моря"
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=tmp_path / "data", photos_dir=None, index_dir=index_dir)
        bot = BotProcess.start(client, env, tmp_path / "bot.log")
        try:
            bot.wait_polling(timeout=180)
            client.send_text(user, query)
            album, keyboard = wait_new(client, user.id, 0, 2, timeout=60)
            want = [hit.photo for hit in expected.search(query, k=RESULTS_PER_QUERY).hits]
            assert photos_of(album) == want
            assert keyboard.text is not None and keyboard.text.startswith("Фотографии 1–4")
        finally:
            assert bot.terminate() == 0, bot.log()
    assert f"model {encoder.name}" in bot.log()
