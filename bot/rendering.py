"""Turning results into what Telegram shows: albums, captions, texts and keyboards.

Pure functions of their arguments (no I/O, no clock), so Telegram's limits are enforced and
tested in one place: an album holds 2–10 photos, a caption at most 1024 characters, a message
at most 4096, callback data at most 64 bytes, a keyboard at most 100 buttons. The PTB objects
built here (`InlineKeyboardMarkup`) are plain data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, PhotoSize

from bot.callbacks import (
    CallbackCodec,
    LanguageButton,
    MoreButton,
    ReportButton,
    VoteButton,
    VoteTarget,
)
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, Language, plural_key, text
from bot.storage.stats import Stats
from engine.legal import disclaimer
from engine.search import MAX_QUERY_CHARS

MAX_ALBUM: Final = 10
MAX_CAPTION: Final = 1024
MAX_MESSAGE: Final = 4096
MAX_BUTTONS: Final = 100
PHOTOS_PER_ROW: Final = 2  # two photos' 👍/👎/🚫 per keyboard row: 6 buttons (Telegram: 8)
QUERY_QUOTE_CHARS: Final = 200  # how much of the query the result headers repeat
QUERY_PHOTO_MIN_SIDE: Final = 320  # smallest side of a photo query worth downloading

T = TypeVar("T")


@dataclass(frozen=True)
class ResultPhoto:
    """One photo of a page as shown: its rank among the query's results and its path."""

    rank: int
    photo: str


def truncate(value: str, limit: int) -> str:
    """`value` cut to at most `limit` characters, marking the cut with an ellipsis."""
    if limit < 1:
        raise ValueError("limit must be positive")
    if len(value) <= limit:
        return value
    return value[: limit - 1].rstrip() + "…"


def album_sizes(count: int, max_size: int = MAX_ALBUM) -> list[int]:
    """How to split `count` photos into messages: albums of 2–`max_size`, or one single photo.

    Sizes are as even as possible (11 → 6 + 5, never 10 + 1), because Telegram refuses an
    album of one and a lone photo after a full album looks like a mistake.
    """
    if count < 0:
        raise ValueError("count must be non-negative")
    if count <= max_size:
        return [count] if count else []
    groups = math.ceil(count / max_size)
    base, extra = divmod(count, groups)
    return [base + 1] * extra + [base] * (groups - extra)


def split_albums(items: Sequence[T], max_size: int = MAX_ALBUM) -> list[list[T]]:
    """`items` in order, cut into the groups `album_sizes` describes."""
    groups: list[list[T]] = []
    start = 0
    for size in album_sizes(len(items), max_size):
        groups.append(list(items[start : start + size]))
        start += size
    return groups


def photo_caption(rank: int, photo: str) -> str:
    """The caption under a photo: its number (what the vote buttons refer to) and its path."""
    return truncate(f"{rank}. {photo}", MAX_CAPTION)


def results_header(language: Language, query: str, first: int, last: int) -> str:
    """The text above a page's vote buttons, naming the query and the photos' numbers."""
    quoted = truncate(" ".join(query.split()), QUERY_QUOTE_CHARS)
    key = "results_header_one" if first == last else "results_header"
    header = text(language, key, first=first, last=last, query=quoted)
    return truncate(f"{header}\n{text(language, 'rate_prompt')}", MAX_MESSAGE)


def withheld_notice(language: Language, count: int) -> str | None:
    """"N photos withheld." and the legal disclaimer, or None when nothing was withheld.

    Said after the results so the user knows the page is not everything the collection
    holds, and why; the count is the engine's `SearchResult.withheld` for that page.
    """
    if count <= 0:
        return None
    notice = text(language, plural_key("withheld", count), count=count)
    return truncate(f"{notice} {disclaimer(language)}", MAX_MESSAGE)


def vote_label(rank: int, vote: int, current: int | None) -> str:
    """A button's label: the photo's number and 👍 or 👎, ticked when it is the current vote."""
    emoji = "👍" if vote > 0 else "👎"
    return f"{rank} {emoji} ✓" if current == vote else f"{rank} {emoji}"


def vote_keyboard(
    codec: CallbackCodec,
    *,
    user_id: int,
    query_id: int,
    photos: Sequence[ResultPhoto],
    votes: Mapping[int, int],
    next_rank: int | None,
    language: Language,
) -> InlineKeyboardMarkup:
    """👍/👎/🚫 per photo of one album (by rank), plus "More ▶" when `next_rank` is given.

    🚫 reports that the photo shows a child (the detector missed it): one tap, because a
    photo of a child must leave every result at once, not after a dialogue.

    `votes` maps rank → the user's current vote (+1/-1); each button carries the vote its
    press sets (pressing the current vote withdraws it), so the keyboard always shows the
    state stored and a repeated press is harmless.
    """
    if not photos:
        raise ValueError("a vote keyboard needs at least one photo")
    if len(photos) > MAX_ALBUM:
        raise ValueError(f"one keyboard per album of at most {MAX_ALBUM} photos")
    ranks = [photo.rank for photo in photos]
    if ranks != list(range(ranks[0], ranks[0] + len(ranks))):
        raise ValueError(f"a page's ranks must be consecutive, not {ranks}")
    page_start, page_len = ranks[0], len(ranks)
    rows: list[list[InlineKeyboardButton]] = []
    row: list[InlineKeyboardButton] = []
    for rank in ranks:
        current = votes.get(rank)
        for vote in (1, -1):
            target: VoteTarget = None if current == vote else (1 if vote > 0 else -1)
            button = VoteButton(query_id, page_start, page_len, rank, target)
            row.append(
                InlineKeyboardButton(
                    vote_label(rank, vote, current),
                    callback_data=codec.encode(button, user_id=user_id),
                )
            )
        row.append(
            InlineKeyboardButton(
                f"{rank} 🚫",
                callback_data=codec.encode(ReportButton(query_id, rank), user_id=user_id),
            )
        )
        if len(row) == 3 * PHOTOS_PER_ROW:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    if next_rank is not None:
        more = MoreButton(query_id, page_start, next_rank)
        rows.append(
            [
                InlineKeyboardButton(
                    text(language, "more_button"),
                    callback_data=codec.encode(more, user_id=user_id),
                )
            ]
        )
    assert sum(len(r) for r in rows) <= MAX_BUTTONS
    return InlineKeyboardMarkup(rows)


def language_keyboard(codec: CallbackCodec, *, user_id: int) -> InlineKeyboardMarkup:
    """One button per language the bot speaks."""
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    LANGUAGE_NAMES[lang],
                    callback_data=codec.encode(LanguageButton(lang), user_id=user_id),
                )
                for lang in LANGUAGES
            ]
        ]
    )


def same_keyboard(a: InlineKeyboardMarkup | None, b: InlineKeyboardMarkup | None) -> bool:
    """Whether two keyboards show the same buttons (then editing would be refused by
    Telegram as "message is not modified")."""
    def flat(markup: InlineKeyboardMarkup | None) -> list[list[tuple[str, str | None]]]:
        if markup is None:
            return []
        return [
            [(button.text, str(button.callback_data)) for button in row]
            for row in markup.inline_keyboard
        ]

    return flat(a) == flat(b)


def format_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


def _percent(part: int, whole: int) -> str:
    return "—" if whole == 0 else f"{100 * part / whole:.0f}%"


def format_stats(stats: Stats, language: Language, days: int) -> str:
    """The admins' /stats message."""
    votes = stats.votes_up + stats.votes_down
    if stats.top_queries:
        top = "\n".join(
            f"  {count}× {truncate(' '.join(query.split()), 80)}"
            for query, count in stats.top_queries
        )
    else:
        top = text(language, "stats_no_top")
    message = text(
        language,
        "stats",
        days=days,
        queries=stats.queries,
        users=stats.users,
        photo_queries=stats.photo_queries,
        refused=stats.refused,
        refused_pct=_percent(stats.refused, stats.queries),
        shown=stats.shown,
        up=stats.votes_up,
        down=stats.votes_down,
        up_pct=_percent(stats.votes_up, votes),
        reports=stats.reports,
        p50=format_ms(stats.latency_p50_ms),
        p95=format_ms(stats.latency_p95_ms),
        top=top,
    )
    return truncate(message, MAX_MESSAGE)


def query_problem(raw: str, language: Language) -> str | None:
    """What is wrong with a text as a query (empty, too long), or None when it can be searched.

    The same limits as the engine's `validate_query`, answered in the user's language.
    """
    stripped = raw.strip()
    if not stripped:
        return text(language, "empty_query")
    if len(stripped) > MAX_QUERY_CHARS:
        return text(language, "query_too_long", length=len(stripped), limit=MAX_QUERY_CHARS)
    return None


def pick_photo_size(sizes: Sequence[PhotoSize], min_side: int = QUERY_PHOTO_MIN_SIDE) -> PhotoSize:
    """The smallest of Telegram's sizes of a photo that still has `min_side` on both sides.

    The encoder looks at 224 px or less, so downloading the 1280 px version would only cost
    time; a photo smaller than `min_side` everywhere gives its largest size.
    """
    if not sizes:
        raise ValueError("a photo message without sizes")
    big_enough = [s for s in sizes if min(s.width, s.height) >= min_side]
    if big_enough:
        return min(big_enough, key=lambda s: s.width * s.height)
    return max(sizes, key=lambda s: s.width * s.height)
