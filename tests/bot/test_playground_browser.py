"""The playground in a real browser: headless Chromium, driven over the DevTools protocol.

A person opens the web chat, types a query, sees the album, presses 👍 — and the vote is in
the bot's database. Chromium is Debian's `chromium` package; the test is skipped where it is
not installed. The protocol is spoken with aiohttp's websocket client (no extra dependency).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.playground import StandInClient, StandInThread
from bot.storage import make_engine
from engine.search import SearchEngine
from tests.bot.conftest import Collection
from tests.bot.e2e import RESULTS_PER_QUERY, TOKEN, BotProcess, bot_env, rows
from tests.browser import Page, needs_chromium, open_page
from tests.conftest import sqlite_url

pytestmark = needs_chromium


@pytest.fixture
def chromium_profile(tmp_path: Path) -> Iterator[Path]:
    profile = tmp_path / "chromium"
    profile.mkdir()
    yield profile


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
            async for page in open_page(client.url, chromium_profile):
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
