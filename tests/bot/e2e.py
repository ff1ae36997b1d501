"""End-to-end helpers: a photo collection, a tiny model with fixed weights, the real bot process.

The bot runs as `python -m bot` in a subprocess, configured only through its environment
(exactly as an operator would), and talks HTTP to the Bot API stand-in that runs on a thread
of the test process; the tests play the users through the stand-in's client and read the
database the bot wrote.

The tiny open_clip model is saved as a checkpoint once per session: with `:random` weights
the bot process and the test process would each draw their own, and the test could not compute
the ranking the bot must show. With a checkpoint both load the same weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bot.playground import BotMessage, FakeUser, StandInClient
from tests.conftest import REPO_ROOT
from tests.engine.conftest import TINY_CLIP, make_photo

TOKEN = "123456789:TEST-token_for-the-stand-in"
ADMIN = FakeUser(id=900_001, first_name="Ada", username="admin", language_code="en")
RESULTS_PER_QUERY = 4
STARTUP_TIMEOUT = 90.0  # a busy 2-core machine imports torch slowly
REPLY_TIMEOUT = 30.0

# Twelve photos, all different in colour and stripes: three pages of four.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (20, 40, 210),
    "yellow": (230, 220, 20),
    "grey": (128, 128, 128),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "orange": (250, 140, 0),
    "purple": (120, 30, 160),
    "cyan": (20, 210, 210),
    "pink": (250, 150, 190),
    "brown": (120, 70, 20),
}


BIG_PHOTO = "beach/white.jpg"  # camera-sized: the bot must downscale it for sending
BIG_SIZE = (2400, 1600)


def make_collection(root: Path) -> Path:
    """Twelve photos in two folders (JPEG and PNG), like a hosting's folder tree: small ones,
    and one camera-sized (BIG_PHOTO)."""
    for number, (name, colour) in enumerate(COLOURS.items()):
        folder = "beach" if number % 2 else "city"
        suffix = ".png" if number % 3 == 0 else ".jpg"
        path = f"{folder}/{name}{suffix}"
        size = BIG_SIZE if path == BIG_PHOTO else (96, 64)
        make_photo(root / path, colour, size=size, stripe=number * 3)
    return root


def make_tiny_model(directory: Path) -> str:
    """A tiny open_clip model with fixed random weights; returns its model spec."""
    import torch

    from engine.encoders import load_encoder

    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "TinyTestViT.json"
    config.write_text(json.dumps(TINY_CLIP), encoding="utf-8")
    torch.manual_seed(0)
    encoder: Any = load_encoder(f"open_clip:{config}:random")
    checkpoint = directory / "tiny.pt"
    torch.save(encoder.model.state_dict(), checkpoint)
    return f"open_clip:{config}:{checkpoint}"


def bot_env(
    client: StandInClient,
    *,
    data_dir: Path,
    photos_dir: Path | None,
    index_dir: Path | None,
    database_url: str | None = None,
    model: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of `python -m bot`: the repo importable, no stray settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "WEBHOOK_", "ENGINE_"))
        and key not in {"DATABASE_URL", "DATA_DIR", "EXPORT_HASH_KEY", "ADMIN_IDS", "MODEL",
                        "PHOTOS_DIR", "INDEX_DIR", "RESULTS_PER_QUERY", "CALLBACK_SECRET"}
    }
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if part
    )
    env.update(
        TELEGRAM_BOT_TOKEN=client.token,
        TELEGRAM_API_BASE_URL=client.base_url,
        TELEGRAM_API_FILE_URL=client.file_url,
        ADMIN_IDS=str(ADMIN.id),
        DATA_DIR=str(data_dir),
        RESULTS_PER_QUERY=str(RESULTS_PER_QUERY),
        # The tiny random model's zero-shot child scores are noise (they would hide every
        # photo); the photo-side filter is tested in tests/bot/test_withheld*.py.
        ENGINE_CHILD_FILTER="off",
        # Keep the model's threads to one: the machine is shared with the test and others.
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        LOG_LEVEL="INFO",
    )
    if photos_dir is not None:
        env["PHOTOS_DIR"] = str(photos_dir)
    if index_dir is not None:
        env["INDEX_DIR"] = str(index_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if model is not None:
        env["MODEL"] = model
    env.update(extra)
    return env


@dataclass
class BotProcess:
    """`python -m bot` as a child process, its log in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    client: StandInClient

    @classmethod
    def start(cls, client: StandInClient, env: dict[str, str], log_path: Path) -> BotProcess:
        handle = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=log_path.parent,  # no stray .env from the repository
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        return cls(process, log_path, client)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_polling(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Until the bot starts polling for updates, or fail with its log.

        PTB calls deleteWebhook right before its first getUpdates; the stand-in logs a call
        when it completes, so the first (long) getUpdates would only show after its timeout.
        Updates sent from here on are queued until that poll picks them up.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.calls("deleteWebhook") or self.client.calls("getUpdates"):
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"bot exited with {self.process.returncode} before polling:\n{self.log()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"bot did not poll within {timeout} s:\n{self.log()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (killing it if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout, "SIGTERM")

    def wait_exit(self, timeout: float, after: str) -> int:
        """The exit code; a bot still running after `timeout` is killed (never left polling
        behind the test) and the test fails with its log."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"bot still running {timeout} s after {after}:\n"
                                 f"{self.log()}") from None


def wait_for(client: StandInClient, chat_id: int, count: int, timeout: float = REPLY_TIMEOUT,
             ) -> list[BotMessage]:
    """The bot's messages to a chat once there are at least `count` (all of them)."""
    return client.wait_for_messages(chat_id, count, timeout)


def wait_new(
    client: StandInClient,
    chat_id: int,
    before: int,
    count: int = 1,
    predicate: Callable[[list[BotMessage]], bool] | None = None,
    timeout: float = REPLY_TIMEOUT,
) -> list[BotMessage]:
    """The messages the bot sent after the first `before` ones, once there are `count`."""
    messages = client.wait_for_messages(chat_id, before + count, timeout)[before:]
    if predicate is not None:
        client.wait_until(lambda: predicate(client.bot_messages(chat_id)[before:]), timeout)
        messages = client.bot_messages(chat_id)[before:]
    return messages


def settle(client: StandInClient, chat_id: int, quiet: float = 0.7) -> list[BotMessage]:
    """The bot's messages once nothing new arrived for `quiet` seconds (to prove an absence)."""
    seen = -1
    while True:
        messages = client.bot_messages(chat_id)
        if len(messages) == seen:
            return messages
        seen = len(messages)
        time.sleep(quiet)


def captions(message: BotMessage) -> list[str]:
    return [caption or "" for caption in message.captions]


def photos_of(message: BotMessage) -> list[str]:
    """The photo paths an album shows, from the captions the bot writes ("3. beach/red.jpg")."""
    return [caption.split(". ", 1)[1] for caption in captions(message)]


def last_query_id(database: Engine, user_id: int) -> int:
    with database.connect() as connection:
        value = connection.execute(
            text("SELECT max(id) FROM queries WHERE user_id = :user"), {"user": user_id}
        ).scalar_one()
    assert value is not None, f"no query logged for user {user_id}"
    return int(value)


def rows(database: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with database.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]
