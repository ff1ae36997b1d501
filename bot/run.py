"""`python -m bot` (or `python -m bot run`): start the bot and serve until SIGTERM/SIGINT.

Start-up, in the order that fails fastest on a mistake: settings (a missing token is one line
and exit 2, before any model loads), logging, the database (migrated to head), the index (built
first from PHOTOS_DIR when INDEX_DIR holds none), the encoder (MODEL, default: the index's own
model), the legal filter (warmed so the first query is not slow), then long polling (or a
webhook when WEBHOOK_URL is set).

Shutdown: SIGTERM and SIGINT stop fetching updates, let every update already fetched run to
the end (PTB's `Application.stop` waits for the update queue to drain, and with concurrent
updates each task marks its update done only when its handler returns), confirm the fetched
updates to Telegram with a last getUpdates, and exit 0. A second signal while stopping is
logged and ignored rather than aborting handlers half-way; a signal during start-up (loading
the model, migrating) also ends with exit 0, having changed nothing half-way (migrations are
transactional).

Exit codes: 0 stopped by a signal; 2 a setting or input the operator must fix (one line on
stderr); 1 anything unexpected (e.g. the Bot API unreachable after BOOTSTRAP_RETRIES).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.app import MissingTokenError, build_application
from bot.callbacks import CallbackCodec
from bot.exporting.pseudonym import KeyFileError, load_or_create_key
from bot.services import BotApplication, BotServices
from bot.settings import BotSettings
from bot.storage import DatabaseConfigError, MigrationError, make_session_factory, open_database
from bot.storage.database import safe_url
from bot.throttle import Throttle

log = logging.getLogger("bot")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
MISSING_TOKEN = (
    "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token in the "
    "environment or in .env (to try the bot without Telegram: python -m bot.playground)"
)


class StartupError(Exception):
    """A problem the operator must fix; printed as one line, exit 2."""


class StopRequested(BaseException):
    """SIGTERM/SIGINT arrived while starting up (before the event loop took over signals)."""


# ----------------------------------------------------------------------------- logging


class RedactingFormatter(logging.Formatter):
    """One line per event, with secrets masked.

    The bot token is part of every Bot API URL, so any library that logs a URL or an
    exception text could leak it; masking at the formatter catches all of them. Newlines (in
    tracebacks, or typed by users) are escaped so that one event stays one line.
    """

    def __init__(self, secrets: Iterable[str], fmt: str) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line.replace("\r", "\\r").replace("\n", "\\n")


def configure_logging(settings: BotSettings, *, verbose: bool = False) -> None:
    secrets = []
    if settings.telegram_bot_token is not None:
        secrets.append(settings.telegram_bot_token.get_secret_value())
    try:
        password = make_url(settings.database_url).password
    except Exception:  # an unparsable URL is reported later, with safe_url
        password = None
    if password:
        secrets.append(str(password))
    if settings.callback_secret is not None:
        secrets.append(settings.callback_secret.get_secret_value())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = logging.DEBUG if verbose else logging.getLevelNamesMapping().get(
        settings.log_level.upper(), logging.INFO
    )
    root.setLevel(level)
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


# ---------------------------------------------------------------------------- services


def build_services(settings: BotSettings) -> BotServices:
    """Open the database, the index, the model and the filter; raise StartupError on a
    problem the operator can fix."""
    from engine.backends.base import BackendError
    from engine.child_filter import ChildFilterError
    from engine.encoders import DEFAULT_MODEL_SPEC, ModelSpecError, load_encoder
    from engine.index import IndexError_, IndexNotFoundError, PhotoIndex, update_index
    from engine.legal import LegalFilter, LexiconError
    from engine.moderation import ModerationError
    from engine.search import SearchEngine
    from engine.settings import (
        EngineSettings,
        backend_from_settings,
        child_filter_from_settings,
    )

    index_dir = settings.index_dir
    if index_dir is None:
        if settings.photos_dir is None:
            raise StartupError(
                "set PHOTOS_DIR (the photos to search) or INDEX_DIR (an index built with "
                "`python -m engine index`)"
            )
        index_dir = settings.data_dir / "index"
    try:
        database = open_database(settings.database_url)
    except (MigrationError, DatabaseConfigError, SQLAlchemyError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise StartupError(
            f"cannot use the database {safe_url(settings.database_url)}: "
            f"{detail[0] if detail else type(exc).__name__}"
        ) from None
    log.info("database %s ready (migrated to head)", safe_url(settings.database_url))

    try:
        try:
            existing: PhotoIndex | None = PhotoIndex.open(index_dir)
        except IndexNotFoundError:
            existing = None
        if existing is None and settings.photos_dir is None:
            raise StartupError(
                f"no index in {index_dir}: set PHOTOS_DIR to build one, or build it with "
                f"`python -m engine index PHOTOS --index {index_dir}`"
            )
        if settings.model_explicit or existing is None:
            spec = settings.model
        else:
            spec = str(existing.manifest.get("model_spec") or DEFAULT_MODEL_SPEC)
        log.info("loading model %s", spec)
        engine_settings = EngineSettings()
        encoder = load_encoder(spec, engine_settings.query_head, engine_settings.russian_e5)
        child_filter = child_filter_from_settings(engine_settings, encoder.name, lambda: encoder)
        if existing is None and settings.photos_dir is not None:
            _build_index(settings.photos_dir, index_dir, encoder, spec,
                         functools.partial(update_index, child_filter=child_filter,
                                           dtype=engine_settings.index_dtype))
        index = PhotoIndex.open(index_dir)
        legal = LegalFilter.default(engine_settings.legal_extra_lexicons)
        legal.warm_up()
        engine = SearchEngine(encoder, index, legal, child_filter,
                              backend=functools.partial(backend_from_settings, engine_settings))
    except (IndexError_, ModelSpecError, LexiconError, ChildFilterError,
            ModerationError, BackendError) as exc:
        raise StartupError(str(exc)) from None
    log.info("index %s: %d photos, model %s", index_dir, len(index), encoder.name)

    try:
        key = (
            settings.callback_secret.get_secret_value().encode()
            if settings.callback_secret is not None
            else load_or_create_key(settings.callback_key_path)
        )
        codec = CallbackCodec(key)
    except (KeyFileError, ValueError) as exc:
        raise StartupError(f"callback signing key: {exc}") from None
    return BotServices(
        settings=settings,
        engine=engine,
        model_spec=spec,
        database=database,
        sessions=make_session_factory(database),
        codec=codec,
        throttle=Throttle(settings.query_interval, settings.query_queue),
        search_slots=asyncio.Semaphore(settings.search_workers),
    )


def _build_index(photos_dir: Path, index_dir: Path, encoder: Any, spec: str, update: Any) -> None:
    log.info("no index in %s yet: indexing %s", index_dir, photos_dir)
    started = time.monotonic()
    last_logged = [0.0]

    def on_progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last_logged[0] >= 5:
            last_logged[0] = now
            log.info("indexing: %d of %d photos", done, total)

    report = update(photos_dir, index_dir, encoder, model_spec=spec, progress=False,
                    on_progress=on_progress)
    log.info("indexed %d photos in %.1f s (%d unreadable skipped)", report.total,
             time.monotonic() - started, len(report.skipped))


# ------------------------------------------------------------------------------ running


class GracefulStop:
    """Signal handlers on the bot's event loop: the first signal stops the application the
    way `Application.stop_running` documents (the loop leaves `run_forever`, then PTB stops
    the updater, drains the update queue and shuts down); later ones are only logged."""

    def __init__(self, application: BotApplication, loop: asyncio.AbstractEventLoop) -> None:
        self.application = application
        self.loop = loop
        self.requested = False

    def install(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        for sig in signals:
            self.loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.requested:
            log.info("%s again: still finishing the updates in flight", name)
            return
        self.requested = True
        log.info("%s: stopping after the updates in flight", name)
        self._stop()

    def _stop(self) -> None:
        # Before the application runs (still initialising), stop_running() only marks the
        # request, which PTB checks once after post_init; keep asking until it runs.
        self.application.stop_running()
        if not self.application.running and not self.loop.is_closed():
            self.loop.call_later(0.1, self._stop_if_running)

    def _stop_if_running(self) -> None:
        if self.application.running:
            self.application.stop_running()
        elif not self.loop.is_closed():
            self.loop.call_later(0.1, self._stop_if_running)


class StartupSignals:
    """The SIGTERM/SIGINT handler while starting up.

    It raises `StopRequested` wherever the main thread is, and also remembers the signal:
    a raise can be swallowed before it reaches `main` (a library's bare `except:` around an
    optional import while the model loads, or a finaliser, where Python only prints an
    exception). Under load the e2e test once saw a SIGINT lost that way and the bot went on
    to serve; `check` after start-up stops it anyway.
    """

    def __init__(self) -> None:
        self.requested: str | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name
        raise StopRequested(self.requested)

    def check(self) -> None:
        """Raise `StopRequested` if a signal arrived, whether or not its raise got through."""
        if self.requested is not None:
            raise StopRequested(self.requested)


def serve(application: BotApplication, settings: BotSettings) -> None:
    """Run until stopped: long polling, or a webhook when WEBHOOK_URL is set."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    GracefulStop(application, loop).install()
    allowed = ["message", "edited_message", "callback_query"]
    if settings.webhook_url:
        import secrets as random_secrets

        secret = (
            settings.webhook_secret.get_secret_value()
            if settings.webhook_secret is not None
            else random_secrets.token_urlsafe(32)
        )
        application.run_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=allowed,
            bootstrap_retries=settings.bootstrap_retries,
            stop_signals=None,
        )
    else:
        application.run_polling(
            allowed_updates=allowed,
            bootstrap_retries=settings.bootstrap_retries,
            stop_signals=None,
        )


def main(*, verbose: bool = False) -> int:
    """Run the bot with settings from the environment; returns the exit code."""
    from telegram.error import InvalidToken, NetworkError

    try:
        settings = BotSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]).upper()
        print(f"error: invalid setting {where}: {first['msg']}", file=sys.stderr)
        return EXIT_USAGE
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        print(f"error: {MISSING_TOKEN}", file=sys.stderr)
        return EXIT_USAGE
    if settings.webhook_url:
        try:
            import tornado  # noqa: F401  (PTB's webhook server)
        except ImportError:
            print("error: WEBHOOK_URL needs python-telegram-bot[webhooks] (tornado); unset it "
                  "to use long polling", file=sys.stderr)
            return EXIT_USAGE
    configure_logging(settings, verbose=verbose)
    startup = StartupSignals()
    previous = {sig: signal.signal(sig, startup) for sig in (signal.SIGTERM, signal.SIGINT)}
    services: BotServices | None = None
    try:
        services = build_services(settings)
        application = build_application(settings, services)
        startup.check()
        serve(application, settings)
    except StopRequested as stop:
        log.info("%s during start-up: stopped", stop)
    except (StartupError, MissingTokenError) as exc:
        log.error("cannot start: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidToken:
        message = (
            f"the Bot API at {settings.telegram_api_base_url} rejected TELEGRAM_BOT_TOKEN "
            "(check the token with @BotFather)"
        )
        log.error("cannot start: %s", message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except NetworkError as exc:
        log.error("cannot reach the Bot API at %s: %s", settings.telegram_api_base_url, exc)
        return EXIT_FAILURE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if services is not None:
            services.database.dispose()
    log.info("stopped")
    return EXIT_OK
