"""The bot's start-up pieces that need no network: log redaction, settings, admin arguments,
start-up signals."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from bot.handlers.admin import ArgumentProblem, parse_admin_args
from bot.run import RedactingFormatter, StartupSignals, StopRequested, configure_logging
from bot.settings import BotSettings

TOKEN = "123456:SECRET-token"


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"failed calling https://api.example/bot{TOKEN}/getMe")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("x", logging.ERROR, __file__, 1, message, args, exc_info)


def test_secrets_are_masked_and_events_stay_on_one_line() -> None:
    formatter = RedactingFormatter([TOKEN, "pw"], "%(levelname)s %(message)s")
    line = formatter.format(_record("url %s user said %r", f"/bot{TOKEN}/x", "a\nb", exc=True))
    assert TOKEN not in line and "SECRET" not in line
    assert "/bot***/x" in line
    assert "\n" not in line and "Traceback" in line and "RuntimeError" in line


def test_configure_logging_masks_token_and_database_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = BotSettings(
        telegram_bot_token=TOKEN,  # type: ignore[arg-type]
        database_url="postgresql+psycopg://bot:hunter2@db/bot",
    )
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(settings)
        logging.getLogger("t").warning("connecting %s with %s", TOKEN, settings.database_url)
        assert logging.getLogger("httpx").level == logging.WARNING
    finally:
        root.handlers[:], root.level = saved
    err = capsys.readouterr().err
    assert "hunter2" not in err and TOKEN not in err and "connecting ***" in err


def test_settings_for_the_bot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL", "DATA_DIR", "QUERY_INTERVAL", "CALLBACK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = BotSettings()
    assert not settings.model_explicit  # MODEL unset: the index's own model is used
    assert settings.callback_key_path == Path("data/callback.key")
    assert settings.query_interval == 1.0 and settings.photo_long_side == 1280
    monkeypatch.setenv("MODEL", "dual:default")
    monkeypatch.setenv("QUERY_INTERVAL", "0.5")
    explicit = BotSettings()
    assert explicit.model_explicit and explicit.query_interval == 0.5
    secret = BotSettings(callback_secret="s" * 32)  # type: ignore[arg-type]
    assert "s" * 32 not in repr(secret) and "s" * 32 not in str(secret)


def test_admin_arguments() -> None:
    assert parse_admin_args([], "stats", tables=False).days == 30
    args = parse_admin_args(["7"], "export", tables=True)
    assert (args.days, args.tables) == (7, ("queries", "feedback"))
    args = parse_admin_args(["labels", "90"], "export", tables=True)
    assert (args.days, args.tables) == (90, ("labels",))
    for bad, key in ((["0"], "bad_days"), (["99999"], "bad_days"), (["-3"], "bad_days"),
                     (["stuff"], "bad_table")):
        with pytest.raises(ArgumentProblem) as problem:
            parse_admin_args(bad, "export", tables=True)
        assert problem.value.key == key
    with pytest.raises(ArgumentProblem):
        parse_admin_args(["queries"], "stats", tables=False)


def test_a_start_up_signal_counts_even_when_its_raise_is_swallowed() -> None:
    """A real SIGINT lands while a library's bare `except:` runs (as during a model import):
    the raise is lost there, but the bot's check after start-up still stops it."""
    startup = StartupSignals()
    startup.check()  # nothing arrived: no stop
    previous = signal.signal(signal.SIGINT, startup)
    try:
        with contextlib.suppress(BaseException):  # what a careless library's `except:` does
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs as soon as this returns
    finally:
        signal.signal(signal.SIGINT, previous)
    assert startup.requested == "SIGINT"
    with pytest.raises(StopRequested, match="SIGINT"):
        startup.check()
