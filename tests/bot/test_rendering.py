"""Rendering: album splits, captions and texts within Telegram's limits, keyboards, stats."""

from __future__ import annotations

import pytest
from telegram import PhotoSize

from bot.callbacks import MAX_CALLBACK_BYTES, CallbackCodec, MoreButton, ReportButton, VoteButton
from bot.rendering import (
    MAX_CAPTION,
    MAX_MESSAGE,
    ResultPhoto,
    album_sizes,
    format_ms,
    format_stats,
    language_keyboard,
    photo_caption,
    pick_photo_size,
    query_problem,
    results_header,
    same_keyboard,
    split_albums,
    truncate,
    vote_keyboard,
)
from bot.storage.stats import Stats
from engine.search import MAX_QUERY_CHARS

CODEC = CallbackCodec(b"k" * 32)


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (2, [2]), (10, [10]), (11, [6, 5]), (20, [10, 10]), (21, [7, 7, 7]),
     (100, [10] * 10)],
)
def test_album_sizes(count: int, sizes: list[int]) -> None:
    assert album_sizes(count) == sizes


@pytest.mark.parametrize("count", range(2, 101))
def test_albums_never_hold_one_or_more_than_ten(count: int) -> None:
    sizes = album_sizes(count)
    assert sum(sizes) == count
    assert all(2 <= size <= 10 for size in sizes)


def test_split_albums_keeps_order() -> None:
    groups = split_albums(list(range(11)))
    assert groups == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


def test_caption_and_truncation() -> None:
    assert photo_caption(3, "beach/dog.jpg") == "3. beach/dog.jpg"
    long = photo_caption(1, "x" * 5000)
    assert len(long) == MAX_CAPTION and long.endswith("…")
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"


def test_results_header_quotes_and_limits() -> None:
    header = results_header("en", "two dogs\n on a beach", 1, 10)
    assert header.startswith("Photos 1–10 for “two dogs on a beach”.")
    assert "👍" in header
    assert results_header("ru", "собака", 3, 3).startswith("Фотография 3 по запросу «собака»")
    assert len(results_header("en", "word " * 2000, 1, 10)) <= MAX_MESSAGE


def _buttons(markup: object) -> list[list[tuple[str, str]]]:
    return [[(b.text, str(b.callback_data)) for b in row] for row in markup.inline_keyboard]  # type: ignore[attr-defined]


def test_vote_keyboard_layout_state_and_targets() -> None:
    photos = [ResultPhoto(rank, f"p{rank}.jpg") for rank in range(11, 16)]
    markup = vote_keyboard(CODEC, user_id=5, query_id=9, photos=photos, votes={12: 1, 13: -1},
                           next_rank=16, language="en")
    rows = _buttons(markup)
    assert [len(row) for row in rows] == [6, 6, 3, 1]
    labels = [label for row in rows for label, _ in row]
    assert labels[:9] == ["11 👍", "11 👎", "11 🚫", "12 👍 ✓", "12 👎", "12 🚫", "13 👍",
                          "13 👎 ✓", "13 🚫"]
    assert labels[-1] == "More ▶"
    decoded = [CODEC.decode(data, user_id=5) for row in rows for _, data in row]
    assert all(len(data.encode()) <= MAX_CALLBACK_BYTES for row in rows for _, data in row)
    # Pressing the current vote withdraws it; pressing the other sets it.
    assert decoded[3] == VoteButton(9, 11, 5, 12, None)
    assert decoded[4] == VoteButton(9, 11, 5, 12, -1)
    assert decoded[0] == VoteButton(9, 11, 5, 11, 1)
    assert decoded[2] == ReportButton(9, 11) and decoded[14] == ReportButton(9, 15)
    assert decoded[-1] == MoreButton(9, 11, 16)


def test_vote_keyboard_russian_more_and_no_more() -> None:
    photos = [ResultPhoto(1, "a.jpg"), ResultPhoto(2, "b.jpg")]
    ru = vote_keyboard(CODEC, user_id=1, query_id=1, photos=photos, votes={}, next_rank=3,
                       language="ru")
    assert _buttons(ru)[-1][0][0] == "Ещё ▶"
    none = vote_keyboard(CODEC, user_id=1, query_id=1, photos=photos, votes={}, next_rank=None,
                         language="en")
    assert len(_buttons(none)) == 1


def test_vote_keyboard_refuses_bad_pages() -> None:
    with pytest.raises(ValueError):
        vote_keyboard(CODEC, user_id=1, query_id=1, photos=[], votes={}, next_rank=None,
                      language="en")
    with pytest.raises(ValueError):
        vote_keyboard(CODEC, user_id=1, query_id=1,
                      photos=[ResultPhoto(1, "a"), ResultPhoto(3, "b")], votes={},
                      next_rank=None, language="en")
    with pytest.raises(ValueError):
        vote_keyboard(CODEC, user_id=1, query_id=1,
                      photos=[ResultPhoto(r, "a") for r in range(1, 12)], votes={},
                      next_rank=None, language="en")


def test_same_keyboard() -> None:
    photos = [ResultPhoto(1, "a.jpg"), ResultPhoto(2, "b.jpg")]
    a = vote_keyboard(CODEC, user_id=1, query_id=1, photos=photos, votes={}, next_rank=None,
                      language="en")
    b = vote_keyboard(CODEC, user_id=1, query_id=1, photos=photos, votes={}, next_rank=None,
                      language="en")
    c = vote_keyboard(CODEC, user_id=1, query_id=1, photos=photos, votes={1: 1}, next_rank=None,
                      language="en")
    assert same_keyboard(a, b)
    assert not same_keyboard(a, c)
    assert not same_keyboard(None, a)


def test_language_keyboard() -> None:
    rows = _buttons(language_keyboard(CODEC, user_id=3))
    assert [label for label, _ in rows[0]] == ["English", "Русский"]


def test_query_problem() -> None:
    assert query_problem("dogs", "en") is None
    assert query_problem("   \n", "en") == (
        "Your message is empty: describe the photo you are looking for."
    )
    assert "пустое" in (query_problem("", "ru") or "")
    long = query_problem("x" * (MAX_QUERY_CHARS + 1), "en") or ""
    assert str(MAX_QUERY_CHARS + 1) in long and str(MAX_QUERY_CHARS) in long
    assert query_problem(" " + "x" * MAX_QUERY_CHARS + " ", "en") is None


def _size(side: int, other: int | None = None) -> PhotoSize:
    return PhotoSize(f"id{side}", f"u{side}", side, other or side)


def test_pick_photo_size() -> None:
    sizes = [_size(90), _size(320, 240), _size(800, 600), _size(1280, 960)]
    assert pick_photo_size(sizes).file_id == "id800"
    assert pick_photo_size([_size(90), _size(200)]).file_id == "id200"
    with pytest.raises(ValueError):
        pick_photo_size([])


def test_format_stats() -> None:
    stats = Stats(users=2, queries=10, refused=1, photo_queries=3, shown=80, votes_up=3,
                  votes_down=1, latency_p50_ms=42.4, latency_p95_ms=1530.0,
                  top_queries=(("dogs on a beach", 4), ("cat", 2)), reports=2)
    message = format_stats(stats, "en", 30)
    assert "Queries: 10 from 2 users (3 by photo)" in message
    assert "Refused: 1 (10%)" in message
    assert "👍 3 / 👎 1 (75% 👍)" in message
    assert "Reported as showing a child 🚫: 2" in message
    assert "p50 42 ms, p95 1.5 s" in message
    assert "4× dogs on a beach" in message
    empty = Stats(0, 0, 0, 0, 0, 0, 0, None, None, ())
    ru = format_stats(empty, "ru", 7)
    assert "За 7 дней" in ru and "(пока нет)" in ru and "p50 —" in ru
    assert format_ms(None) == "—"
