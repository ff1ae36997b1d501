"""👍/👎 presses: store the vote, redraw the keyboard to show it, always answer the callback.

Each button carries the vote its press sets (pressing the current vote withdraws it), so the
handler uses storage's idempotent `set_vote`: a retried or doubled callback lands on the same
state instead of flipping it back. The keyboard is redrawn from what storage holds after the
write, and only edited when it differs from the one on screen (Telegram refuses an edit that
changes nothing with "message is not modified").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session
from telegram import InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest

from bot.callbacks import CallbackCodec, CallbackDataError, MoreButton, VoteButton
from bot.handlers.common import CallbackAnswer, pressed, require_callback
from bot.i18n import text
from bot.rendering import ResultPhoto, same_keyboard, vote_keyboard
from bot.services import BotContext
from bot.storage import (
    NotQueryOwnerError,
    Shown,
    UnknownShownPhotoError,
    get_shown_photos,
    get_votes,
    set_vote,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Stored:
    vote: int | None
    changed: bool
    page: tuple[Shown, ...]
    votes_by_rank: dict[int, int]
    last_rank: int


async def on_vote(update: Update, context: BotContext) -> None:
    query, user = require_callback(update)
    answer = CallbackAnswer(query)
    services = context.services
    language = services.language_of(user)
    try:
        button = await pressed(services, query, user, answer, language, VoteButton)
        if button is None:
            return

        def store(session: Session) -> _Stored:
            shown = get_shown_photos(session, button.query_id)
            by_rank = {item.rank: item for item in shown}
            target = by_rank.get(button.rank)
            if target is None:
                raise UnknownShownPhotoError(f"query {button.query_id} has no rank {button.rank}")
            result = set_vote(session, user_id=user.id, shown_photo_id=target.id,
                              vote=button.target)
            votes = get_votes(session, user_id=user.id, query_id=button.query_id)
            end = button.page_start + button.page_len
            return _Stored(
                vote=result.vote,
                changed=result.changed,
                page=tuple(s for s in shown if button.page_start <= s.rank < end),
                votes_by_rank={s.rank: votes[s.id] for s in shown if s.id in votes},
                last_rank=shown[-1].rank,
            )

        try:
            stored = await services.in_transaction(store)
        except NotQueryOwnerError:
            log.warning("user %s voted on another user's query %d", user.id, button.query_id)
            await answer(text(language, "button_not_yours"), alert=True)
            return
        except UnknownShownPhotoError:
            await answer(text(language, "button_expired"), alert=True)
            return
        log.info("user %s: query %d photo %d vote %s%s", user.id, button.query_id, button.rank,
                 stored.vote, "" if stored.changed else " (unchanged)")
        key = {1: "vote_up", -1: "vote_down"}.get(stored.vote or 0, "vote_cleared")
        await answer(text(language, key, rank=button.rank))
        current = query.message.reply_markup if isinstance(query.message, Message) else None
        keyboard = vote_keyboard(
            services.codec,
            user_id=user.id,
            query_id=button.query_id,
            photos=[ResultPhoto(s.rank, s.photo) for s in stored.page],
            votes=stored.votes_by_rank,
            next_rank=_more_after(services.codec, current, user.id, button, stored.last_rank,
                                  collection_size=len(services.engine.index)),
            language=language,
        )
        if same_keyboard(current, keyboard):
            return
        try:
            await query.edit_message_reply_markup(reply_markup=keyboard)
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise
    finally:
        await answer()


def _more_after(
    codec: CallbackCodec,
    current: InlineKeyboardMarkup | None,
    user_id: int,
    button: VoteButton,
    last_rank: int,
    *,
    collection_size: int,
) -> int | None:
    """Keep "More ▶" exactly when the keyboard on screen has it (and it is still the last
    page): whether more results exist was decided when the page was sent. Without the
    keyboard on screen (an inaccessible message), offer it while the collection has more."""
    page_end = button.page_start + button.page_len - 1
    if page_end != last_rank:
        return None
    if current is None:
        return page_end + 1 if page_end < collection_size else None
    for row in current.inline_keyboard:
        for key in row:
            try:
                decoded = codec.decode(str(key.callback_data), user_id=user_id)
            except CallbackDataError:
                continue
            if isinstance(decoded, MoreButton):
                return decoded.next_rank
    return None
