"""The real python-telegram-bot client against the stand-in: what PTB accepts, the bot will."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time

import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto
from telegram.constants import ChatType, MessageEntityType
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    RetryAfter,
)

from bot.playground import BotApiStandIn, FakeUser
from tests.playground.conftest import TOKEN, jpeg


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d, callback_data=d) for d in data]])


async def test_get_me(bot: telegram.Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot and me.id == 123456 and me.username == "photo_search_bot"


async def test_bad_token_and_unknown_method(stand_in: BotApiStandIn, bot: telegram.Bot) -> None:
    wrong = telegram.Bot("123456:WRONG", base_url=stand_in.base_url)
    with pytest.raises(InvalidToken):
        await wrong.get_me()
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")
    assert stand_in.client.calls("getMe")[-1].status == 401


async def test_long_poll_delivers_text_and_redelivers_until_confirmed(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    message_id = stand_in.client.send_text(user, "/export 7")
    updates = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 1.0  # woken by the message, not by the timeout
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.message_id == message_id
    assert message.text == "/export 7"
    assert message.chat.id == user.id and message.chat.type == ChatType.PRIVATE
    assert message.from_user is not None and message.from_user.language_code == "ru"
    assert message.from_user.username == "ann_photo" and not message.from_user.is_bot
    (entity,) = message.entities
    assert (entity.type, entity.offset, entity.length) == (MessageEntityType.BOT_COMMAND, 0, 7)
    assert message.parse_entities(["bot_command"]) == {entity: "/export"}

    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [updates[0].update_id]
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == ()
    assert stand_in.client.pending_updates() == []
    assert stand_in.client.delivered_at(user.id, message_id) is not None


async def test_command_with_username_and_non_latin_text(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.send_text(user, "/start@photo_search_bot")
    stand_in.client.send_text(user, "/помощь")
    first, second = await bot.get_updates(timeout=1)
    assert first.message is not None and first.message.entities[0].length == 23
    assert second.message is not None and second.message.entities == ()


async def test_newer_poll_ends_the_pending_one_with_conflict(
    stand_in: BotApiStandIn, bot: telegram.Bot
) -> None:
    other = telegram.Bot(TOKEN, base_url=stand_in.base_url)
    async with other:
        waiting = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.2)
        second = asyncio.create_task(other.get_updates(timeout=10))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(waiting, 5)
        # The first instance polls again, as PTB's updater does: now the other one is refused.
        assert await bot.get_updates(timeout=0) == ()
        with pytest.raises(Conflict):
            await asyncio.wait_for(second, 5)


async def test_album_upload_then_by_file_id(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    media = [
        InputMediaPhoto(
            jpeg(800, 600), caption="<b>Two</b> results", parse_mode="HTML", filename="beach/01.jpg"
        ),
        InputMediaPhoto(jpeg(300, 200, (0, 90, 200)), filename="beach/02.jpg"),
    ]
    sent = await bot.send_media_group(user.id, media)
    assert len(sent) == 2
    assert sent[0].media_group_id and sent[0].media_group_id == sent[1].media_group_id
    assert sent[1].message_id == sent[0].message_id + 1
    assert [(p.width, p.height) for p in sent[0].photo] == [(320, 240), (800, 600)]
    assert [(p.width, p.height) for p in sent[1].photo] == [(300, 200)]
    assert sent[0].caption == "Two results"
    assert sent[0].caption_entities[0].type == MessageEntityType.BOLD
    file_ids = [message.photo[-1].file_id for message in sent]

    again = await bot.send_media_group(user.id, [InputMediaPhoto(f) for f in reversed(file_ids)])
    assert again[0].media_group_id != sent[0].media_group_id
    assert [m.photo[-1].file_unique_id for m in again] == [
        m.photo[-1].file_unique_id for m in reversed(sent)
    ]

    first, second = stand_in.client.bot_messages(user.id)
    assert first.method == second.method == "sendMediaGroup"
    assert first.photo_file_ids == file_ids and first.message_ids == [
        sent[0].message_id,
        sent[1].message_id,
    ]
    assert first.photo_names == ["beach/01.jpg", "beach/02.jpg"]
    assert second.photo_names == ["beach/02.jpg", "beach/01.jpg"]
    assert stand_in.client.photo_bytes(file_ids[1]) == media[1].media.input_file_content  # type: ignore[union-attr]


async def test_album_limits_and_caption_length(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    photo = await bot.send_photo(user.id, jpeg(), caption="x" * 1024)
    file_id = photo.photo[-1].file_id
    with pytest.raises(BadRequest, match=r"(?i)media group must include 2-10 items"):
        await bot.send_media_group(user.id, [InputMediaPhoto(file_id)])
    with pytest.raises(BadRequest, match=r"(?i)too many messages to send as an album"):
        await bot.send_media_group(user.id, [InputMediaPhoto(file_id)] * 11)
    with pytest.raises(BadRequest, match=r"(?i)message caption is too long"):
        await bot.send_media_group(
            user.id, [InputMediaPhoto(file_id, caption="y" * 1025), InputMediaPhoto(file_id)]
        )
    with pytest.raises(BadRequest, match=r"(?i)message caption is too long"):
        await bot.send_photo(user.id, file_id, caption="z" * 1025)
    with pytest.raises(BadRequest, match=r"(?i)wrong file identifier/http url specified"):
        await bot.send_photo(user.id, "AgACAgIAAxkBAAnotarealid")
    with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
        await bot.send_photo(user.id, b"not a picture")
    assert len(await bot.send_media_group(user.id, [InputMediaPhoto(file_id)] * 10)) == 10
    assert len(stand_in.client.bot_messages(user.id)) == 2  # the refused calls sent nothing


async def test_callback_data_over_64_bytes_is_refused(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    fits = "ж" * 32  # 64 bytes in UTF-8
    await bot.send_message(user.id, "ok", reply_markup=keyboard(fits))
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(user.id, "too long", reply_markup=keyboard("x" * 65))


async def test_edits_and_not_modified(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    message = await bot.send_message(user.id, "Rate", reply_markup=keyboard("up", "down"))
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(
            user.id, message.message_id, reply_markup=keyboard("up", "down")
        )
    edited = await bot.edit_message_reply_markup(
        user.id, message.message_id, reply_markup=keyboard("UP", "down")
    )
    assert isinstance(edited, telegram.Message) and edited.edit_date is not None
    (current,) = stand_in.client.bot_messages(user.id)
    assert current.callback_data == ["UP", "down"] and current.edits == 1
    # Editing the text without reply_markup drops the keyboard, as in Telegram.
    await bot.edit_message_text("Thanks", user.id, message.message_id)
    (current,) = stand_in.client.bot_messages(user.id)
    assert current.text == "Thanks" and current.reply_markup is None and current.edits == 2
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", user.id, 999)


async def test_button_press_answer_and_answer_twice(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    message = await bot.send_message(user.id, "Rate", reply_markup=keyboard("v:1:up"))
    with pytest.raises(ValueError, match="no button"):
        stand_in.client.press_button(user, message.message_id, "v:1:down")
    callback_id = stand_in.client.press_button(user, message.message_id, "v:1:up")
    (update,) = await bot.get_updates(timeout=1)
    query = update.callback_query
    assert query is not None and query.id == callback_id and query.data == "v:1:up"
    assert query.from_user.id == user.id
    assert isinstance(query.message, telegram.Message)
    assert query.message.message_id == message.message_id and query.message.chat.id == user.id
    assert await query.answer("Saved")
    answer = await stand_in.callback_answer(callback_id, timeout=1)
    assert answer is not None and answer.text == "Saved" and not answer.show_alert
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer("again")
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("12345")


async def test_user_photo_download_returns_the_same_bytes(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    picture = jpeg(1000, 700, (10, 160, 60))
    stand_in.client.send_photo(user, picture, caption="like this")
    (update,) = await bot.get_updates(timeout=1)
    assert update.message is not None and update.message.caption == "like this"
    sizes = update.message.photo
    assert [(s.width, s.height) for s in sizes] == [(320, 224), (1000, 700)]
    file = await bot.get_file(sizes[-1].file_id)
    assert file.file_path is not None and file.file_path.startswith(stand_in.file_url)
    assert bytes(await file.download_as_bytearray()) == picture
    with pytest.raises(BadRequest, match=r"(?i)invalid file_id"):
        await bot.get_file("nope")


async def test_document_arrives_with_its_name(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    data = b"query,photo,vote\nbeach,a.jpg,1\n"
    sent = await bot.send_document(user.id, data, filename="export.csv", caption="7 days")
    assert sent.document is not None and sent.document.file_name == "export.csv"
    assert sent.document.mime_type == "text/csv"
    (message,) = stand_in.client.bot_messages(user.id)
    assert message.method == "sendDocument" and message.document_name == "export.csv"
    assert message.document_file_id is not None
    assert stand_in.client.file_bytes(message.document_file_id) == data


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_retry_after_injection(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    stand_in.client.fail_next("sendMessage", times=1, retry_after=3)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(user.id, "hello")
    retry = caught.value.retry_after
    assert (retry.total_seconds() if isinstance(retry, dtm.timedelta) else retry) == 3
    await bot.send_message(user.id, "hello")  # only the next call failed
    assert [call.status for call in stand_in.client.calls("sendMessage")] == [429, 200]


async def test_unknown_and_blocked_chats(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await bot.send_message(777, "hi")
    stand_in.client.add_user(user)
    stand_in.client.block(user)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await bot.send_message(user.id, "hi")


async def test_html_is_parsed_like_telegram(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    sent = await bot.send_message(user.id, "<b>kids &amp; dogs</b> 🐶 <i>ok</i>", parse_mode="HTML")
    assert sent.text == "kids & dogs 🐶 ok"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        (MessageEntityType.BOLD, 0, 11),
        (MessageEntityType.ITALIC, 15, 2),  # the dog is two UTF-16 units
    ]
    with pytest.raises(BadRequest, match=r'(?i)unsupported start tag "br"'):
        await bot.send_message(user.id, "a<br>b", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)reserved"):
        await bot.send_message(user.id, "Found 3 photos.", parse_mode="MarkdownV2")


async def test_chat_action_and_commands(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.add_user(user)
    assert await bot.send_chat_action(user.id, "upload_photo")
    assert stand_in.client.typing(user.id)
    await bot.set_my_commands([("help", "How to search")])
    await bot.set_my_commands([("help", "Как искать")], language_code="ru")
    assert [c.description for c in await bot.get_my_commands(language_code="ru")] == ["Как искать"]
    assert stand_in.client.commands("ru")[0]["description"] == "Как искать"
    assert stand_in.client.commands("de")[0]["description"] == "How to search"
    scope = telegram.BotCommandScopeChat(user.id)
    await bot.set_my_commands([("export", "Export the log")], scope=scope)
    assert stand_in.client.commands("ru", chat_id=user.id)[0]["command"] == "export"
    assert stand_in.client.commands("ru", chat_id=1)[0]["command"] == "help"
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Help!", "bad")])


async def test_replies_deletion_and_allowed_updates(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    question = stand_in.client.send_text(user, "beach")
    reply = await bot.send_message(user.id, "Nothing found", reply_to_message_id=question)
    assert reply.reply_to_message is not None and reply.reply_to_message.text == "beach"
    assert await bot.delete_message(user.id, reply.message_id)
    assert stand_in.client.bot_messages(user.id)[0].deleted
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await bot.delete_message(user.id, reply.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(user.id, "x", reply_to_message_id=999)

    (update,) = await bot.get_updates(timeout=0, allowed_updates=["message"])
    keyboard_message = await bot.send_message(user.id, "Rate", reply_markup=keyboard("up"))
    stand_in.client.press_button(user, keyboard_message.message_id, "up")
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()


async def test_delete_webhook_can_drop_pending_updates(
    stand_in: BotApiStandIn, bot: telegram.Bot, user: FakeUser
) -> None:
    stand_in.client.send_text(user, "old")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == ()


async def test_pending_poll_returns_promptly_on_stop(
    stand_in: BotApiStandIn, bot: telegram.Bot
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await stand_in.stop()
    assert await asyncio.wait_for(poll, 5) == ()
    assert time.monotonic() - started < 2
