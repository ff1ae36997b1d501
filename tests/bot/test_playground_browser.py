"""The playground in a real browser: headless Chromium, driven over the DevTools protocol.

A person opens the web chat, types a query, sees the album, presses 👍 — and the vote is in
the bot's database. Chromium is Debian's `chromium` package; the test is skipped where it is
not installed. The protocol is spoken with aiohttp's websocket client (no extra dependency).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.playground import StandInClient, StandInThread
from bot.storage import make_engine
from engine.search import SearchEngine
from tests.bot.conftest import Collection
from tests.bot.e2e import RESULTS_PER_QUERY, TOKEN, BotProcess, bot_env, rows
from tests.conftest import sqlite_url

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless browser test needs Debian's chromium (apt-get install chromium)",
)


class Page:
    """A DevTools session on one page: evaluate JavaScript, type text."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        await self.socket.send_json({"id": number, "method": method, "params": params})
        while True:
            message = await self.socket.receive_json(timeout=30)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        page_text = await self.js("document.body.innerText")
        raise AssertionError(f"not true within {timeout} s: {expression}\npage:\n{page_text}")


@pytest.fixture
def chromium_profile(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "chromium"
    profile.mkdir()
    yield profile


async def _open_page(url: str, profile: Path) -> AsyncIterator[Page]:
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if browser.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = json.loads(await response.text())
            page = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        browser.terminate()
        try:
            browser.wait(15)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(5)


async def test_type_query_see_photos_vote_in_database(
    tmp_path: Path, chromium_profile: Path, collection: Collection, expected: SearchEngine
) -> None:
    url = sqlite_url(tmp_path / "data" / "bot.sqlite3")
    query = "a red car on a wet street"
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=tmp_path / "data", photos_dir=collection.photos,
                      index_dir=collection.index)
        bot = BotProcess.start(client, env, tmp_path / "bot.log")
        try:
            await asyncio.to_thread(bot.wait_polling)
            async for page in _open_page(client.url, chromium_profile):
                await _chat(page, query)
            user_id = _web_user_id(client)
            database = make_engine(url)
            try:
                votes = rows(
                    database,
                    "SELECT q.text, s.rank, s.photo, f.vote FROM feedback f "
                    "JOIN shown_photos s ON s.id = f.shown_photo_id "
                    "JOIN queries q ON q.id = s.query_id WHERE f.user_id = :u",
                    u=user_id,
                )
            finally:
                database.dispose()
        finally:
            assert bot.terminate() == 0, bot.log()
    best = expected.search(query, k=RESULTS_PER_QUERY).hits[0].photo
    assert votes == [(query, 1, best, 1)]


async def _chat(page: Page, query: str) -> None:
    await page.call("Runtime.enable")
    await page.wait("document.readyState === 'complete' && !!document.getElementById('text')")
    await page.js("document.getElementById('text').focus()")
    await page.call("Input.insertText", text=query)
    await page.js("document.getElementById('send').click()")
    # The album: four photos, actually loaded from the stand-in's file URLs.
    await page.wait(
        f"[...document.querySelectorAll('.album img')].filter("
        f"i => i.complete && i.naturalWidth > 0).length >= {RESULTS_PER_QUERY}",
        timeout=60,
    )
    clicked = await page.wait(
        "(() => { const b = [...document.querySelectorAll('.kb-button')]"
        ".find(b => b.textContent.trim() === '1 👍'); if (b) { b.click(); return true; }"
        " return false; })()"
    )
    assert clicked
    await page.wait(
        "[...document.querySelectorAll('.kb-button')]"
        ".some(b => b.textContent.trim() === '1 👍 ✓')"
    )


def _web_user_id(client: StandInClient) -> int:
    """The web chat's visitor: the user whose chat received the album."""
    from bot.playground.standin import DEFAULT_WEB_USER

    assert client.bot_messages(DEFAULT_WEB_USER.id), "the web chat's user got no messages"
    return DEFAULT_WEB_USER.id
