"""End to end: everything that is not a plain query — commands, odd inputs, pacing, failures,
and /reindex — against one real bot process that built its own index at start."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.playground import FakeUser, StandInClient, StandInThread
from bot.storage import make_engine
from engine.child_filter import ChildFilter
from engine.encoders import load_encoder
from engine.index import PhotoIndex
from engine.legal import LegalFilter
from engine.search import MAX_QUERY_CHARS, SearchEngine
from tests.bot.conftest import Collection
from tests.bot.e2e import (
    ADMIN,
    RESULTS_PER_QUERY,
    TOKEN,
    BotProcess,
    bot_env,
    photos_of,
    rows,
    settle,
    wait_new,
)
from tests.conftest import sqlite_url
from tests.engine.conftest import make_photo


@dataclass
class Harness:
    client: StandInClient
    bot: BotProcess
    database: Engine
    photos: Path
    index: Path
    data: Path
    model_spec: str


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, collection: Collection) -> Iterator[Harness]:
    """A bot with its own copy of the photos and no index yet: it builds one at start."""
    root = tmp_path_factory.mktemp("bot-inputs")
    photos = root / "photos"
    shutil.copytree(collection.photos, photos)
    index = root / "index"
    url = sqlite_url(root / "data" / "bot.sqlite3")
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=root / "data", photos_dir=photos, index_dir=index,
                      model=collection.model_spec)
        bot = BotProcess.start(client, env, root / "bot.log")
        database = make_engine(url)
        try:
            bot.wait_polling()
            yield Harness(client, bot, database, photos, index, root / "data",
                          collection.model_spec)
        finally:
            code = bot.terminate()
            database.dispose()
        assert code == 0, bot.log()


def reply_to(h: Harness, user: FakeUser, message: str, count: int = 1) -> list[str]:
    before = len(h.client.bot_messages(user.id))
    h.client.send_text(user, message)
    return [m.text or "" for m in wait_new(h.client, user.id, before, count)]


def nothing_logged_for(h: Harness, user: FakeUser) -> bool:
    return rows(h.database, "SELECT count(*) FROM queries WHERE user_id = :u", u=user.id) == [(0,)]


def test_built_its_index_at_start(harness: Harness) -> None:
    index = PhotoIndex.open(harness.index)
    assert len(index) == 12
    assert index.manifest["model_spec"] == harness.model_spec
    assert "no index in" in harness.bot.log()


def test_start_and_help_in_both_languages(harness: Harness) -> None:
    h = harness
    english = FakeUser(id=2001, first_name="Ann", language_code="en-GB")
    [start] = reply_to(h, english, "/start")
    assert start.startswith("Hi Ann! I find reference photos")
    [help_] = reply_to(h, english, "/help")
    assert help_.startswith("How to search:") and "Admin commands" not in help_
    russian = FakeUser(id=2002, first_name="Иван", language_code="ru")
    [start] = reply_to(h, russian, "/start")
    assert start.startswith("Здравствуйте, Иван!")
    [help_] = reply_to(h, russian, "/help")
    assert help_.startswith("Как искать:")
    [admin_help] = reply_to(h, ADMIN, "/help")
    assert "/export [days]" in admin_help
    [unknown] = reply_to(h, english, "/frobnicate")
    assert unknown == "I do not know that command. /help lists what I can do."


def test_language_switch_is_remembered(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=2003, first_name="Max", language_code="en")
    assert reply_to(h, user, "/language ru") == ["Хорошо, буду отвечать по-русски."]
    [help_] = reply_to(h, user, "/help")
    assert help_.startswith("Как искать:")
    assert rows(h.database, "SELECT chosen_language FROM users WHERE id = :u", u=user.id) == [
        ("ru",)
    ]

    before = len(h.client.bot_messages(user.id))
    h.client.send_text(user, "/language")
    [prompt] = wait_new(h.client, user.id, before, 1)
    assert prompt.text == "Выберите язык общения:"
    data = dict(b for row in prompt.buttons for b in row)["English"] or ""
    answer = h.client.callback_answer(h.client.press_button(user, prompt.message_id, data), 30)
    assert answer is not None and answer.text == "OK, I will talk to you in English."
    h.client.wait_until(lambda: h.client.bot_messages(user.id)[before].text
                        == "OK, I will talk to you in English.", 30)
    assert reply_to(h, user, "/language klingon") == [
        "I speak English (/language en) and Russian (/language ru)."
    ]


def test_non_queries_get_short_helpful_answers(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=2004, first_name="Pia", language_code="en")
    h.client.send_sticker(user)
    assert wait_new(h.client, user.id, 0, 1)[0].text == (
        "Nice sticker! I search with words or photos: describe the picture you need.")
    h.client.send_voice(user)
    assert "voice" in (wait_new(h.client, user.id, 1, 1)[0].text or "")
    h.client.send_document(user, b"%PDF-1.4 not really", "brief.pdf", "application/pdf")
    assert "as a photo (not as a file)" in (wait_new(h.client, user.id, 2, 1)[0].text or "")
    assert reply_to(h, user, "   ") == [
        "Your message is empty: describe the photo you are looking for."]
    [too_long] = reply_to(h, user, "dog " * 300)
    assert too_long.startswith(f"Your query is {len(('dog ' * 300).strip())} characters long")
    assert str(MAX_QUERY_CHARS) in too_long
    sent = settle(h.client, user.id)
    assert len(sent) == 5 and not any(m.photo_file_ids for m in sent)
    assert nothing_logged_for(h, user)


def test_fast_queries_are_slowed_politely(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=2005, first_name="Quick", language_code="en")
    for number in range(6):
        h.client.send_text(user, f"a boat on a lake number {number}")
    # 4 albums + 4 keyboards, 1 "slowing down" notice, 2 refusals.
    wait_new(h.client, user.id, 0, 11, timeout=60)
    sent = settle(h.client, user.id)
    texts = [m.text or "" for m in sent]
    assert sum(t.startswith("You are sending queries quickly") for t in texts) == 1
    assert sum(t.startswith("Too many queries at once") for t in texts) == 2
    albums = [m for m in sent if m.method == "sendMediaGroup"]
    assert len(albums) == 4
    gaps = [b.sent_at - a.sent_at for a, b in itertools.pairwise(albums)]
    assert all(gap >= 0.8 for gap in gaps), gaps  # one a second (less timer slack)
    assert rows(h.database, "SELECT count(*) FROM queries WHERE user_id = :u", u=user.id) == [
        (4,)]


def test_retry_after_is_honoured(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=2006, first_name="Rita", language_code="en")
    h.client.fail_next("sendMediaGroup", times=1, retry_after=1)
    h.client.send_text(user, "mountains in fog")
    album, _ = wait_new(h.client, user.id, 0, 2)
    assert album.method == "sendMediaGroup" and len(album.photo_file_ids) == RESULTS_PER_QUERY
    calls = h.client.calls("sendMediaGroup")
    refused = [c for c in calls if c.status == 429]
    assert refused
    retried = next(c for c in calls if c.ok and c.time > refused[-1].time)
    assert retried.time - refused[-1].time >= 1.0


def test_failure_reports_an_incident_id(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=2007, first_name="Eve", language_code="en")
    h.client.fail_next("sendMediaGroup", times=10, retry_after=1)
    h.client.send_text(user, "a bridge at night")
    [message] = wait_new(h.client, user.id, 0, 1, timeout=60)
    h.client.fail_next("sendMediaGroup", times=0, retry_after=1)
    assert message.text is not None and message.text.startswith(
        "Something went wrong on my side (incident ")
    incident = message.text.split("(incident ", 1)[1].split(")", 1)[0]
    assert len(incident) == 8
    h.client.wait_until(lambda: f"incident {incident}: update" in h.bot.log(), 10)
    # The query was logged before sending failed: the record is not lost.
    assert rows(h.database, "SELECT count(*) FROM queries WHERE user_id = :u", u=user.id) == [
        (1,)]


def test_reindex_edits_one_message_then_searches_the_new_index(harness: Harness) -> None:
    h = harness
    make_photo(h.photos / "new" / "violet.jpg", (140, 0, 255), size=(96, 64), stripe=7)
    before = len(h.client.bot_messages(ADMIN.id))
    h.client.send_text(ADMIN, "/reindex")
    [status] = wait_new(h.client, ADMIN.id, before, 1)
    h.client.wait_until(
        lambda: (h.client.bot_messages(ADMIN.id)[before].text or "").startswith("Index updated"),
        60,
    )
    final = h.client.bot_messages(ADMIN.id)[before]
    assert final.message_id == status.message_id and final.edits >= 1
    assert final.text is not None and final.text.startswith(
        "Index updated: 13 photos (1 added, 0 updated, 0 removed, 12 unchanged")
    assert len(settle(h.client, ADMIN.id)) == before + 1  # one message, edited in place

    engine = SearchEngine(load_encoder(h.model_spec), PhotoIndex.open(h.index),
                          LegalFilter.default(), ChildFilter.off())  # as bot_env runs the bot
    query = "a violet flower"
    user = FakeUser(id=2008, first_name="Vi", language_code="en")
    h.client.send_text(user, query)
    album, keyboard = wait_new(h.client, user.id, 0, 2)
    assert photos_of(album) == [hit.photo for hit in engine.search(query, k=4).hits]
    # Thirteen photos in pages of four: the fourth page is one photo, sent with sendPhoto.
    for page in (1, 2, 3):
        before = len(h.client.bot_messages(user.id))
        data = dict(b for row in keyboard.buttons for b in row)["More ▶"] or ""
        h.client.press_button(user, keyboard.message_id, data)
        # The album, then its buttons (a "slow down" notice may come first).
        new = wait_new(h.client, user.id, before, 2, timeout=60,
                       predicate=lambda new: any(m.buttons for m in new))
        album = next(m for m in new if m.photo_file_ids)
        keyboard = next(m for m in new if m.buttons)
        want = [hit.photo for hit in engine.search(query, k=4, offset=4 * page).hits]
        assert photos_of(album) == want
    assert album.method == "sendPhoto" and album.captions == [f"13. {want[0]}"]
    assert [label for row in keyboard.buttons for label, _ in row] == ["13 👍", "13 👎", "13 🚫"]
    before = len(h.client.bot_messages(user.id))
    # The new photo itself, sent as a photo query, comes first: the new index is live.
    h.client.send_photo(user, (h.photos / "new" / "violet.jpg").read_bytes())
    sent = wait_new(h.client, user.id, before, 2, predicate=lambda new: any(
        m.method == "sendMediaGroup" for m in new))
    album = next(m for m in sent if m.method == "sendMediaGroup")
    assert photos_of(album)[0] == "new/violet.jpg"
    assert "reindex done" in h.bot.log()
