"""The `/_user/` HTTP API the web chat uses, driven with aiohttp's client, and the page itself."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import telegram
from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto

from bot.playground import BotApiStandIn
from tests.playground.conftest import jpeg

WEB_USER = {"id": 5151, "first_name": "Visitor", "language_code": "ru"}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_web_chat_round_trip(stand_in: BotApiStandIn, bot: telegram.Bot) -> None:
    origin = stand_in.base_url.removesuffix("/bot")
    async with aiohttp.ClientSession(origin) as http:
        async with http.get("/") as page:
            assert page.status == 200 and "<html" in (await page.text()).lower()
        async with http.get("/_user/info") as info:
            assert (await info.json())["bot"]["username"] == "photo_search_bot"

        async with http.post("/_user/send_text", json={"user": WEB_USER, "text": "sunset"}) as r:
            assert r.status == 200 and (await r.json())["message_id"] == 1
        (update,) = await bot.get_updates(timeout=1)
        assert update.message is not None and update.message.text == "sunset"
        assert update.message.from_user is not None
        assert update.message.from_user.language_code == "ru"

        async with http.get("/_user/updates", params={"chat_id": "5151", "after": "0"}) as r:
            first = await r.json()
        assert [e["from"] for e in first["entries"]] == ["user"]

        # A long poll after the last seen change returns once the bot answers.
        poll = asyncio.create_task(
            http.get("/_user/updates", params={"chat_id": "5151", "after": str(first["seq"])})
        )
        await asyncio.sleep(0.1)
        photos = [InputMediaPhoto(jpeg(400, 300), filename=f"p{i}.jpg") for i in range(2)]
        await bot.send_media_group(5151, photos)
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("👍 1", callback_data="v1")]])
        vote = await bot.send_message(5151, "Rate them", reply_markup=markup)
        async with await asyncio.wait_for(poll, 5) as r:
            album = (await r.json())["entries"]
        assert album[0]["from"] == "bot" and len(album[0]["items"]) == 2
        photo = album[0]["items"][0]["photo"]
        assert photo["name"] == "p0.jpg" and photo["width"] == 400
        async with http.get(photo["url"]) as r:
            assert await r.read() == stand_in.client.photo_bytes(photo["file_id"])

        async with http.post(
            "/_user/press_button",
            json={"user": WEB_USER, "message_id": vote.message_id, "callback_data": "v1"},
        ) as r:
            callback_id = (await r.json())["callback_id"]
        (update,) = await bot.get_updates(offset=update.update_id + 1, timeout=1)
        assert update.callback_query is not None and update.callback_query.id == callback_id
        await update.callback_query.answer("Vote saved")
        async with http.get("/_user/callback_answer", params={"id": callback_id}) as r:
            assert (await r.json())["answer"]["text"] == "Vote saved"

        async with http.post(
            "/_user/press_button",
            json={"user": WEB_USER, "message_id": vote.message_id, "callback_data": "forged"},
        ) as r:
            assert r.status == 400 and "no button" in (await r.json())["error"]

        form = aiohttp.FormData()
        form.add_field("user", json.dumps(WEB_USER))
        form.add_field("photo", png(3000, 1500), filename="shot.png", content_type="image/png")
        async with http.post("/_user/send_photo", data=form) as r:
            assert r.status == 200
        (update,) = await bot.get_updates(offset=update.update_id + 1, timeout=1)
        assert update.message is not None
        largest = update.message.photo[-1]
        assert (largest.width, largest.height) == (2560, 1280)  # as a Telegram app compresses
        data = bytes(await (await bot.get_file(largest.file_id)).download_as_bytearray())
        assert data[:2] == b"\xff\xd8"  # JPEG

        async with http.get("/_user/file/unknown") as r:
            assert r.status == 404


async def test_typing_wakes_the_long_poll(stand_in: BotApiStandIn, bot: telegram.Bot) -> None:
    stand_in.client.send_text(stand_in.web_user, "hi")
    origin = stand_in.base_url.removesuffix("/bot")
    chat = str(stand_in.web_user.id)
    async with aiohttp.ClientSession(origin) as http:
        async with http.get("/_user/updates", params={"chat_id": chat}) as r:
            seq = (await r.json())["seq"]
        poll = asyncio.create_task(
            http.get("/_user/updates", params={"chat_id": chat, "after": str(seq)})
        )
        await asyncio.sleep(0.1)
        await bot.send_chat_action(stand_in.web_user.id, "typing")
        async with await asyncio.wait_for(poll, 5) as r:
            body = await r.json()
        assert body["typing"] is True and body["entries"] == []
