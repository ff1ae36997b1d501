"""End to end: the real `python -m bot` process against the Bot API stand-in.

One bot process per database backend serves every test of this module (each test plays its
own users, so they do not see each other's chats); the expectations come from an engine with
the same model and index, and from the database the bot wrote.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine

from bot.playground import BotMessage, CallbackAnswer, FakeUser, StandInClient, StandInThread
from bot.storage import make_engine
from engine.legal import DISCLAIMER_EN, DISCLAIMER_RU
from engine.moderation import read_overrides, set_decision
from engine.search import SearchEngine
from tests.bot.conftest import Collection
from tests.bot.e2e import (
    ADMIN,
    BIG_PHOTO,
    RESULTS_PER_QUERY,
    TOKEN,
    BotProcess,
    bot_env,
    last_query_id,
    photos_of,
    rows,
    settle,
    wait_new,
)
from tests.conftest import BACKENDS, sqlite_url


@dataclass
class Harness:
    client: StandInClient
    bot: BotProcess
    database: Engine


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    collection: Collection,
) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp(f"bot-{request.param}")
    if request.param == "sqlite":
        url = sqlite_url(root / "data" / "bot.sqlite3")  # the bot creates and migrates it
    else:
        url = request.getfixturevalue("pg_databases").create()  # empty: migrated at start
    with StandInThread(TOKEN) as client:
        env = bot_env(client, data_dir=root / "data", photos_dir=collection.photos,
                      index_dir=collection.index, database_url=url)
        bot = BotProcess.start(client, env, root / "bot.log")
        database = make_engine(url)
        try:
            bot.wait_polling()
            yield Harness(client, bot, database)
        finally:
            code = bot.terminate()
            database.dispose()
        assert code == 0, bot.log()


def labels(message: BotMessage) -> list[str]:
    return [label for row in message.buttons for label, _ in row]


def current(client: StandInClient, message: BotMessage) -> BotMessage:
    """The message as it is now (after the bot's edits)."""
    return next(m for m in client.bot_messages(message.chat_id)
                if m.message_id == message.message_id)


def ask(h: Harness, user: FakeUser, query: str) -> tuple[BotMessage, BotMessage]:
    """Send a query; return the album and the vote-keyboard message that follows it."""
    before = len(h.client.bot_messages(user.id))
    h.client.send_text(user, query)
    album, keyboard = wait_new(h.client, user.id, before, 2)
    return album, keyboard


def press(h: Harness, user: FakeUser, message: BotMessage, label: str) -> CallbackAnswer:
    data = dict(b for row in current(h.client, message).buttons for b in row)[label]
    callback_id = h.client.press_button(user, message.message_id, str(data))
    answer = h.client.callback_answer(callback_id, timeout=30)
    assert answer is not None, f"callback for {label!r} never answered:\n{h.bot.log()[-3000:]}"
    return answer


def wait_label(h: Harness, message: BotMessage, label: str, present: bool = True) -> None:
    h.client.wait_until(lambda: (label in labels(current(h.client, message))) == present, 30)


def vote_of(h: Harness, user: FakeUser, query_id: int, rank: int) -> int | None:
    found = rows(
        h.database,
        "SELECT f.vote FROM feedback f JOIN shown_photos s ON s.id = f.shown_photo_id "
        "WHERE s.query_id = :q AND s.rank = :r AND f.user_id = :u",
        q=query_id, r=rank, u=user.id,
    )
    return found[0][0] if found else None


def test_query_vote_change_and_export(harness: Harness, expected: SearchEngine) -> None:
    h = harness
    user = FakeUser(id=1001, first_name="Pat", username="pat", language_code="en")
    query = "a red car on a beach"
    album, keyboard = ask(h, user, query)

    want = [hit.photo for hit in expected.search(query, k=RESULTS_PER_QUERY).hits]
    assert album.method == "sendMediaGroup"
    assert photos_of(album) == want
    assert len(album.photo_file_ids) == RESULTS_PER_QUERY
    # The pictures themselves (first uploads, named after the photo), not only the captions.
    assert album.photo_names == [Path(photo).stem + ".jpg" for photo in want]
    assert keyboard.text is not None and query in keyboard.text
    assert labels(keyboard)[:6] == ["1 👍", "1 👎", "1 🚫", "2 👍", "2 👎", "2 🚫"]

    query_id = last_query_id(h.database, user.id)
    logged = rows(h.database, "SELECT rank, photo FROM shown_photos WHERE query_id = :q "
                  "ORDER BY rank", q=query_id)
    assert logged == [(rank, photo) for rank, photo in enumerate(want, start=1)]
    assert rows(h.database, "SELECT kind, text, refused, n_results FROM queries WHERE id = :q",
                q=query_id) == [("text", query, False, RESULTS_PER_QUERY)]

    answer = press(h, user, keyboard, "2 👍")
    assert answer.text == "👍 saved for photo 2"
    wait_label(h, keyboard, "2 👍 ✓")
    assert vote_of(h, user, query_id, 2) == 1

    answer = press(h, user, keyboard, "2 👎")  # change the vote
    assert answer.text == "👎 saved for photo 2"
    wait_label(h, keyboard, "2 👎 ✓")
    assert "2 👍 ✓" not in labels(current(h.client, keyboard))
    assert vote_of(h, user, query_id, 2) == -1

    press(h, user, keyboard, "3 👍")
    wait_label(h, keyboard, "3 👍 ✓")
    assert vote_of(h, user, query_id, 3) == 1
    answer = press(h, user, keyboard, "3 👍 ✓")  # the same vote again withdraws it
    assert answer.text == "Vote for photo 3 withdrawn"
    wait_label(h, keyboard, "3 👍 ✓", present=False)
    assert vote_of(h, user, query_id, 3) is None
    assert not [c for c in h.client.calls() if not c.ok and c.method != "getUpdates"]

    before = len(h.client.bot_messages(ADMIN.id))
    h.client.send_text(ADMIN, "/export 7")
    documents = wait_new(h.client, ADMIN.id, before, 2)
    names = [d.document_name or "" for d in documents]
    assert names[0].startswith("queries-") and names[0].endswith(".csv")
    assert names[1].startswith("feedback-") and names[1].endswith(".csv")
    queries_csv = list(csv.DictReader(io.StringIO(
        h.client.file_bytes(documents[0].document_file_id or "").decode("utf-8"))))
    assert any(row["text"] == query and row["query_id"] == str(query_id) for row in queries_csv)
    assert all(row["user"].startswith("u") and "user_id" not in row for row in queries_csv)
    feedback = list(csv.DictReader(io.StringIO(
        h.client.file_bytes(documents[1].document_file_id or "").decode("utf-8"))))
    mine = [row for row in feedback if row["query_id"] == str(query_id)]
    assert [(row["query"], row["photo"], row["rank"], row["vote"]) for row in mine] == [
        (query, want[1], "2", "-1")
    ]


def test_a_reported_photo_leaves_every_result_at_once(
    harness: Harness, collection: Collection, expected: SearchEngine
) -> None:
    h = harness
    user = FakeUser(id=1041, first_name="Kim", language_code="en")
    query = "a green boat on a lake"
    album, keyboard = ask(h, user, query)
    reported = photos_of(album)[1]
    query_id = last_query_id(h.database, user.id)
    h.client.send_text(ADMIN, "/help")  # a bot can only message users who wrote to it
    admin_before = len(settle(h.client, ADMIN.id))
    try:
        answer = press(h, user, keyboard, "2 🚫")
        assert answer.text == (
            "Thank you. Photo 2 is now hidden from every search; the admins will review it."
        )
        blocks = [o for o in read_overrides(collection.index).items if o.photo == reported]
        assert [o.decision for o in blocks] == ["block"]
        assert f"by user {user.id} (query {query_id}, photo 2)" in blocks[0].note
        assert rows(h.database, "SELECT s.photo, r.user_id FROM reports r JOIN shown_photos s "
                    "ON s.id = r.shown_photo_id WHERE s.query_id = :q", q=query_id) == [
            (reported, user.id)]
        told = wait_new(h.client, ADMIN.id, admin_before, 1)[0]
        assert told.text is not None and reported in told.text and "--clear" in told.text

        again = press(h, user, keyboard, "2 🚫")  # a second press changes nothing
        assert again.text == "Photo 2 is already hidden from every search. Thank you."
        assert rows(h.database, "SELECT count(*) FROM reports r JOIN shown_photos s "
                    "ON s.id = r.shown_photo_id WHERE s.query_id = :q", q=query_id) == [(1,)]
        assert len(settle(h.client, ADMIN.id)) == admin_before + 1  # admins told once
        h.client.send_text(ADMIN, "/export 7 reports")
        (document,) = wait_new(h.client, ADMIN.id, admin_before + 1, 1)
        assert (document.document_name or "").startswith("reports-")
        exported = list(csv.DictReader(io.StringIO(
            h.client.file_bytes(document.document_file_id or "").decode("utf-8"))))
        assert [(r["query"], r["photo"], r["rank"]) for r in exported
                if r["query_id"] == str(query_id)] == [(query, reported, "2")]

        # Another user's search: the photo is gone, the next one takes its place.
        other = FakeUser(id=1042, first_name="Sam", language_code="en")
        second_album, _ = ask(h, other, query)
        now = expected.search(query, k=RESULTS_PER_QUERY)
        assert reported not in photos_of(second_album)
        assert photos_of(second_album) == [hit.photo for hit in now.hits]
        assert now.withheld == 1
        notice = wait_new(h.client, other.id, 2, 1)[0]
        assert notice.text is not None and notice.text.startswith("1 photo withheld.")
    finally:
        set_decision(collection.index, reported, None)  # the collection is shared


def test_refused_query_gets_the_disclaimer_and_no_photos(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=1002, first_name="Lee", language_code="en")
    h.client.send_text(user, "two children playing on a beach")
    wait_new(h.client, user.id, 0, 1)
    sent = settle(h.client, user.id)
    assert [(m.method, m.text) for m in sent] == [("sendMessage", DISCLAIMER_EN)]
    assert not sent[0].photo_file_ids and not sent[0].buttons
    query_id = last_query_id(h.database, user.id)
    assert rows(h.database, "SELECT refused, n_results FROM queries WHERE id = :q",
                q=query_id) == [(True, 0)]
    assert rows(h.database, "SELECT count(*) FROM shown_photos WHERE query_id = :q",
                q=query_id) == [(0,)]

    russian = FakeUser(id=1003, first_name="Оля", language_code="ru")
    h.client.send_text(russian, "дети на пляже")
    assert wait_new(h.client, russian.id, 0, 1)[0].text == DISCLAIMER_RU


def test_admin_commands_refused_for_others(harness: Harness) -> None:
    h = harness
    user = FakeUser(id=1004, first_name="Sam", username="sam", language_code="en")
    for number, command in enumerate(["/export", "/stats", "/reindex"]):
        h.client.send_text(user, command)
        reply = wait_new(h.client, user.id, number, 1)[0]
        assert reply.text == "Sorry, this command is for the hosting's admins only."
    sent = settle(h.client, user.id)
    assert len(sent) == 3 and not any(m.document_file_id for m in sent)
    assert "tried admin command /export: not allowed" in h.bot.log()


def test_more_pages_through_the_results(harness: Harness, expected: SearchEngine) -> None:
    h = harness
    user = FakeUser(id=1005, first_name="Kim", language_code="en")
    query = "sunset over the sea"
    album, keyboard = ask(h, user, query)
    k = RESULTS_PER_QUERY
    assert photos_of(album) == [hit.photo for hit in expected.search(query, k=k).hits]
    pages = [album]
    for page in (1, 2):
        before = len(h.client.bot_messages(user.id))
        answer = press(h, user, keyboard, "More ▶")
        assert answer.text is None
        album, next_keyboard = wait_new(h.client, user.id, before, 2)
        want = [hit.photo for hit in expected.search(query, k=k, offset=page * k).hits]
        assert photos_of(album) == want
        assert album.captions[0] == f"{page * k + 1}. {want[0]}"
        wait_label(h, keyboard, "More ▶", present=False)  # moved to the newest page
        keyboard = next_keyboard
        pages.append(album)
    # Twelve photos: the third page is the last, so it offers no "More".
    assert "More ▶" not in labels(keyboard)
    assert labels(keyboard)[0] == f"{2 * k + 1} 👍"
    query_id = last_query_id(h.database, user.id)
    ranks = rows(h.database, "SELECT rank, photo FROM shown_photos WHERE query_id = :q "
                 "ORDER BY rank", q=query_id)
    assert [photo for _, photo in ranks] == [p for album in pages for p in photos_of(album)]
    assert [rank for rank, _ in ranks] == list(range(1, 3 * k + 1))
    press(h, user, keyboard, "9 👍")
    wait_label(h, keyboard, "9 👍 ✓")
    assert vote_of(h, user, query_id, 9) == 1
    # Every photo of the collection was sent: as JPEG, the camera-sized one downscaled.
    sent = {photo: file_id for album in pages
            for photo, file_id in zip(photos_of(album), album.photo_file_ids, strict=True)}
    for photo, file_id in sent.items():
        with Image.open(io.BytesIO(h.client.photo_bytes(file_id))) as image:
            assert image.format == "JPEG"
            assert image.size == ((1280, 853) if photo == BIG_PHOTO else (96, 64)), photo


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_photo_query(harness: Harness, expected: SearchEngine) -> None:
    h = harness
    user = FakeUser(id=1006, first_name="Ira", language_code="en")
    h.client.send_photo(user, _jpeg((220, 30, 30), (800, 600)), filename="mine.jpg")
    album, keyboard = wait_new(h.client, user.id, 0, 2)
    query_id = last_query_id(h.database, user.id)
    [(kind, file_id)] = rows(h.database, "SELECT kind, text FROM queries WHERE id = :q",
                             q=query_id)
    assert kind == "photo"
    # The bot searched with the size of the photo it downloaded: expect what that finds.
    data = h.client.file_bytes(file_id)
    want = [hit.photo for hit in expected.search_by_photo(data, k=RESULTS_PER_QUERY).hits]
    assert photos_of(album) == want
    assert keyboard.text is not None and keyboard.text.startswith("Photos 1–4 for “your photo”")
    with Image.open(io.BytesIO(data)) as image:
        assert min(image.size) >= 320  # not the thumbnail: a size the encoder can use
    # "More" on a photo query downloads the photo again and shows what comes next.
    before = len(h.client.bot_messages(user.id))
    press(h, user, keyboard, "More ▶")
    album, _ = wait_new(h.client, user.id, before, 2)
    k = RESULTS_PER_QUERY
    assert photos_of(album) == [hit.photo for hit in
                                expected.search_by_photo(data, k=k, offset=k).hits]


def test_photos_are_uploaded_once_then_resent_by_file_id(harness: Harness) -> None:
    h = harness
    first = FakeUser(id=1007, first_name="A", language_code="en")
    second = FakeUser(id=1008, first_name="B", language_code="en")
    query = "an orange umbrella"
    album, _ = ask(h, first, query)
    album_again, _ = ask(h, second, query)
    assert photos_of(album_again) == photos_of(album)
    calls = [c for c in h.client.calls("sendMediaGroup") if c.ok]
    # Every photo goes by the file_id Telegram gave it on its first upload...
    assert [item["media"] for item in calls[-1].params["media"]] == album.photo_file_ids
    # ...and no photo was uploaded twice during this whole module.
    uploads: dict[str, int] = {}
    for call in calls:
        for item in call.params["media"]:
            if str(item["media"]).startswith("attach://"):
                photo = str(item["caption"]).split(". ", 1)[1]
                uploads[photo] = uploads.get(photo, 0) + 1
    assert set(photos_of(album)) <= set(uploads)
    assert set(uploads.values()) == {1}, uploads


def test_votes_cannot_be_forged(harness: Harness) -> None:
    h = harness
    owner = FakeUser(id=1009, first_name="Owner", language_code="en")
    other = FakeUser(id=1010, first_name="Other", language_code="en")
    _, keyboard = ask(h, owner, "a white horse in snow")
    query_id = last_query_id(h.database, owner.id)
    data = dict(b for row in keyboard.buttons for b in row)["1 👍"] or ""

    # Another user pressing the owner's button (e.g. forwarded into a group).
    callback = h.client.press_button(other, keyboard.message_id, data, chat_id=owner.id)
    answer = h.client.callback_answer(callback, timeout=30)
    assert answer is not None and answer.text is not None and "another user" in answer.text
    # The owner's own button re-pointed at another query or rank.
    fields = data.split(".")
    for index in (1, 4):
        forged = fields.copy()
        forged[index] = "z" + forged[index]
        callback = h.client.press_button(owner, keyboard.message_id, ".".join(forged),
                                         check=False)
        answer = h.client.callback_answer(callback, timeout=30)
        assert answer is not None and answer.text is not None
    assert rows(h.database, "SELECT count(*) FROM feedback f JOIN shown_photos s "
                "ON s.id = f.shown_photo_id WHERE s.query_id = :q", q=query_id) == [(0,)]
    assert "pressed a vote button that is not theirs" in h.bot.log()


def test_stats_for_admins(harness: Harness) -> None:
    h = harness
    before = len(h.client.bot_messages(ADMIN.id))
    h.client.send_text(ADMIN, "/stats")
    reply = wait_new(h.client, ADMIN.id, before, 1)[0]
    assert reply.text is not None
    assert reply.text.startswith("Last 30 days:\nQueries: ")
    assert "Latency: p50 " in reply.text and "Top queries:" in reply.text
