"""Getting result photos to Telegram: downscaled uploads once, cached `file_id`s after that.

Why: the hosting's originals are camera files of many megabytes; Telegram recompresses photos
to at most 1280 px anyway, so uploading a 1280 px JPEG (typically 150–400 KB) costs nothing in
quality and is an order of magnitude faster. After the first upload Telegram knows the photo by
its `file_id`, so the bot remembers it in storage, keyed by (bot id, photo, fingerprint); the
fingerprint is the file's size and modification time plus the upload size, so a replaced photo
(or a changed PHOTO_LONG_SIDE) is uploaded afresh instead of showing the old picture.
A cached id Telegram no longer accepts is forgotten and the album re-sent with uploads, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session
from telegram import InputFile, InputMediaPhoto, Message
from telegram.error import BadRequest

from bot.rendering import photo_caption
from bot.services import BotBot, BotServices
from bot.storage import forget_file_id, get_file_ids, put_file_id, reader
from engine.images import UnreadablePhotoError, thumbnail_jpeg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PagePhoto:
    """A result to show: its rank among the query's results, identity and file."""

    rank: int
    photo: str
    path: Path
    score: float


@dataclass(frozen=True)
class ReadyPhoto:
    """A result ready to send: a cached `file_id`, or the JPEG to upload."""

    rank: int
    photo: str
    path: Path
    score: float
    fingerprint: str
    file_id: str | None = None
    jpeg: bytes | None = None

    @property
    def caption(self) -> str:
        return photo_caption(self.rank, self.photo)


def fingerprint(path: Path, long_side: int) -> str:
    """Identity of the file's current content as far as the upload is concerned."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}-{long_side}"


def prepare_photos(
    services: BotServices, bot_id: int, photos: Sequence[PagePhoto]
) -> list[ReadyPhoto]:
    """Look up cached file ids and render JPEGs for the rest (blocking: run in a thread).

    Photos that cannot be read (deleted or corrupt since they were indexed) are left out and
    logged, so the album and the query log only hold photos the user can actually see.
    """
    long_side = services.settings.photo_long_side
    fingerprints: dict[str, str] = {}
    readable: list[PagePhoto] = []
    for item in photos:
        try:
            fingerprints[item.photo] = fingerprint(item.path, long_side)
            readable.append(item)
        except OSError as exc:
            log.warning("result photo %s is missing (%s); left out", item.photo, exc.strerror)
    with Session(reader(services.database)) as session:
        cached = get_file_ids(session, bot_id=bot_id, fingerprints=fingerprints)
        session.rollback()
    ready: list[ReadyPhoto] = []
    for item in readable:
        base = ReadyPhoto(
            item.rank, item.photo, item.path, item.score, fingerprints[item.photo]
        )
        file_id = cached.get(item.photo)
        if file_id is not None:
            ready.append(replace(base, file_id=file_id))
            continue
        try:
            ready.append(replace(base, jpeg=thumbnail_jpeg(item.path, long_side)))
        except UnreadablePhotoError as exc:
            log.warning("result photo %s is unreadable (%s); left out", item.photo, exc)
    return ready


def _media(item: ReadyPhoto, *, in_album: bool) -> str | InputFile:
    """The photo as Telegram wants it: a cached file_id, or an upload.

    Uploads in an album must be separate multipart parts referenced as `attach://<name>`
    from the media JSON, which PTB only does for InputFiles made with `attach=True`; a single
    sendPhoto takes the upload as its `photo` part directly.
    """
    if item.file_id is not None:
        return item.file_id
    assert item.jpeg is not None
    name = PurePosixPath(item.photo).with_suffix(".jpg").name
    return InputFile(item.jpeg, filename=name, attach=in_album)


async def _send(bot: BotBot, chat_id: int, group: Sequence[ReadyPhoto]) -> Sequence[Message]:
    if len(group) == 1:
        only = group[0]
        photo = _media(only, in_album=False)
        return [await bot.send_photo(chat_id, photo=photo, caption=only.caption)]
    media = [
        InputMediaPhoto(media=_media(item, in_album=True), caption=item.caption)
        for item in group
    ]
    return await bot.send_media_group(chat_id, media=media)


async def send_album(
    bot: BotBot, services: BotServices, chat_id: int, group: Sequence[ReadyPhoto]
) -> None:
    """Send one album (2–10 photos) or a single photo, then remember new file ids."""
    try:
        messages = await _send(bot, chat_id, group)
    except BadRequest as exc:
        stale = [item for item in group if item.file_id is not None]
        if not stale:
            raise
        log.warning("Telegram refused cached file ids (%s); uploading %d photos again",
                    exc.message, len(stale))

        def forget(session: Session) -> None:
            for item in stale:
                forget_file_id(session, bot_id=bot.id, photo=item.photo)

        await services.in_transaction(forget)
        long_side = services.settings.photo_long_side

        def upload_all() -> list[ReadyPhoto]:
            return [
                item if item.jpeg is not None
                else replace(item, file_id=None, jpeg=thumbnail_jpeg(item.path, long_side))
                for item in group
            ]

        group = await asyncio.to_thread(upload_all)
        messages = await _send(bot, chat_id, group)
    await _remember_file_ids(bot, services, group, messages)


async def _remember_file_ids(
    bot: BotBot, services: BotServices, group: Sequence[ReadyPhoto], messages: Sequence[Message]
) -> None:
    uploaded = [
        (item, message.photo[-1])
        for item, message in zip(group, messages, strict=False)
        if item.file_id is None and message.photo
    ]
    if not uploaded:
        return

    def put(session: Session) -> None:
        for item, size in uploaded:
            put_file_id(
                session,
                bot_id=bot.id,
                photo=item.photo,
                fingerprint=item.fingerprint,
                file_id=size.file_id,
                file_unique_id=size.file_unique_id,
            )

    await services.in_transaction(put)
