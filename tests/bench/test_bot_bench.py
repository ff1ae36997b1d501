"""Bot benchmark (`make bench`): 20 users querying at once, end to end, and CPU per query.

The real bot process (`python -m bot`) serves the Bot API stand-in. Latency is measured from
the moment getUpdates handed a user's message to the bot (`delivered_at`) to the moment the
stand-in finished receiving the album (`sent_at` of the sendMediaGroup): the whole handler,
search, logging and upload included, network to Telegram excluded. CPU time is the bot
process's user+system time over the load (from /proc), divided by the queries answered.
Prints figures; asserts none of the timings (machines differ).

Runs with the tiny test model (bot overhead) and, once it is trained, the packaged default
model (realistic search cost). BENCH_ROUNDS sets the rounds of 20 simultaneous queries.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from bot.playground import FakeUser, StandInClient, StandInThread
from tests.bot.e2e import TOKEN, BotProcess, bot_env, make_collection, make_tiny_model
from tests.bot.test_e2e_lifecycle import DEFAULT_MODEL_CONFIG

pytestmark = pytest.mark.bench

USERS = 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
QUERIES = [
    "two dogs running on a beach at sunset",
    "a red car on a wet street at night",
    "mountains in fog",
    "a cup of coffee on a wooden table",
    "старый маяк на скалистом берегу",
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))]


def run_load(client: StandInClient, bot: BotProcess) -> tuple[list[float], float, int]:
    users = [FakeUser(id=50_000 + n, first_name=f"U{n}", language_code="en")
             for n in range(USERS)]
    latencies: list[float] = []
    cpu_before = cpu_seconds(bot.process.pid)
    for round_number in range(ROUNDS):
        started = time.monotonic()
        before = {user.id: len(client.bot_messages(user.id)) for user in users}
        sent = {
            user.id: client.send_text(user, QUERIES[(round_number + user.id) % len(QUERIES)])
            for user in users
        }
        for user in users:
            # The album and the vote buttons after it.
            replies = client.wait_for_messages(user.id, before[user.id] + 2, timeout=120)
            album = replies[before[user.id]]
            assert album.method == "sendMediaGroup", album
            delivered = client.delivered_at(user.id, sent[user.id])
            assert delivered is not None
            latencies.append(album.sent_at - delivered)
        # Users keep to one query a second, so the bot's pacing never delays them.
        time.sleep(max(0.0, 1.1 - (time.monotonic() - started)))
    cpu = cpu_seconds(bot.process.pid) - cpu_before
    return latencies, cpu, USERS * ROUNDS


@pytest.mark.parametrize("model", ["tiny", "dual:default"])
def test_bot_latency_and_cpu(tmp_path: Path, model: str) -> None:
    photos = make_collection(tmp_path / "photos")
    if model == "tiny":
        spec = make_tiny_model(tmp_path / "model")
    elif not DEFAULT_MODEL_CONFIG.exists():
        pytest.skip("the packaged default model is not trained yet")
    else:
        spec = model
    from engine.encoders import load_encoder
    from engine.index import update_index

    update_index(photos, tmp_path / "index", load_encoder(spec), model_spec=spec,
                 progress=False)
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=tmp_path / "data", photos_dir=photos,
                      index_dir=tmp_path / "index", RESULTS_PER_QUERY="10")
        env.pop("OMP_NUM_THREADS")
        env.pop("MKL_NUM_THREADS")
        bot = BotProcess.start(client, env, tmp_path / "bot.log")
        try:
            bot.wait_polling(timeout=300)
            run_load(client, bot)  # warm-up round trip (file ids cached, caches warm)
            latencies, cpu, answered = run_load(client, bot)
        finally:
            assert bot.terminate() == 0, bot.log()
    print(
        f"\nbot end to end [{model}], {USERS} users at once x {ROUNDS} rounds "
        f"({answered} queries, albums of 10 by cached file_id): "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; "
        f"CPU {cpu / answered * 1000:.1f} ms per query (bot process, user+system)"
    )
