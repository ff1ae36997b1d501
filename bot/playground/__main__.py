"""`python -m bot.playground`: the Bot API stand-in and the web chat on one local port.

    python -m bot.playground --port 8080 --token 123456:TOKEN

Then start the bot with TELEGRAM_API_BASE_URL=http://127.0.0.1:8080/bot and
TELEGRAM_API_FILE_URL=http://127.0.0.1:8080/file/bot (and the same token), and open
http://127.0.0.1:8080/. SIGINT/SIGTERM stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.playground.models import FakeUser
from bot.playground.standin import DEFAULT_WEB_USER, BotApiStandIn

DEFAULT_TOKEN = "123456789:playground-local-token"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.playground",
        description="Local Telegram Bot API stand-in with a web chat (127.0.0.1 only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--token",
        default=os.environ.get("TELEGRAM_BOT_TOKEN") or DEFAULT_TOKEN,
        help="the bot token to accept (default: $TELEGRAM_BOT_TOKEN or a fixed local one)",
    )
    parser.add_argument(
        "--user-id",
        type=int,
        default=DEFAULT_WEB_USER.id,
        help="Telegram user id of the web chat's visitor",
    )
    parser.add_argument("--user-name", default=DEFAULT_WEB_USER.first_name)
    parser.add_argument("--bot-username", default="photo_search_bot")
    parser.add_argument("--bot-name", default="Photo Search")
    parser.add_argument(
        "--port-file", type=Path, help="write the bound port here once listening (for scripts)"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stand_in = BotApiStandIn(
        args.token,
        host=args.host,
        port=args.port,
        bot_username=args.bot_username,
        bot_first_name=args.bot_name,
        web_user=FakeUser(id=args.user_id, first_name=args.user_name, username="demo_user"),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stand_in.start()
    if args.port_file is not None:
        args.port_file.write_text(f"{stand_in.port}\n", encoding="utf-8")
    print(
        f"Playground web chat: {stand_in.url}\n"
        f"Bot settings: TELEGRAM_API_BASE_URL={stand_in.base_url} "
        f"TELEGRAM_API_FILE_URL={stand_in.file_url}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await stand_in.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError) as error:
        print(f"bot.playground: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
