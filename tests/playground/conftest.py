"""Fixtures: a stand-in on the test's own event loop, and the real PTB client pointed at it."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import telegram
from PIL import Image

from bot.playground import BotApiStandIn, FakeUser

TOKEN = "123456:TEST-token"


def jpeg(width: int = 640, height: int = 480, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
async def stand_in() -> AsyncIterator[BotApiStandIn]:
    server = BotApiStandIn(TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(stand_in: BotApiStandIn) -> AsyncIterator[telegram.Bot]:
    client = telegram.Bot(TOKEN, base_url=stand_in.base_url, base_file_url=stand_in.file_url)
    async with client:
        yield client


@pytest.fixture
def user() -> FakeUser:
    return FakeUser(id=4242, first_name="Ann", username="ann_photo", language_code="ru")
