"""Files the stand-in knows: uploads from the bot, photos and files from fake users.

Telegram identifies a file by an opaque `file_id` (what a bot re-sends to avoid uploading again)
and a stable `file_unique_id`; a photo comes as several PhotoSize objects, smallest first. The
stand-in keeps the bytes in memory, gives photos two sizes (a <=320 px thumbnail and the original
bytes, unchanged, so tests can compare them), and hands out a `file_path` on `getFile` for the
download URL. Any size's `file_id` re-sends the whole photo, as in Telegram.
"""

from __future__ import annotations

import base64
import io
import itertools
import mimetypes
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from bot.playground.errors import bad_request

THUMBNAIL_SIDE = 320
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# file_id prefixes as Telegram's ids begin (they encode the file type).
_ID_PREFIX = {"photo": "AgAC", "document": "BQAC", "sticker": "CAAC", "voice": "AwAC"}
_PATH_FOLDER = {"photo": "photos", "document": "documents", "sticker": "stickers", "voice": "voice"}
_TYPE_NAME = {"photo": "Photo", "document": "Document", "sticker": "Sticker", "voice": "Voice"}


@dataclass
class StoredFile:
    """One downloadable file (a photo has one per size)."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    mime_type: str
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    file_path: str | None = None

    def photo_size(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "width": self.width,
            "height": self.height,
        }

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "mime_type": self.mime_type,
        }
        if self.file_name:
            body["file_name"] = self.file_name
        return body


@dataclass
class StoredPhoto:
    """A photo: its sizes, smallest first, and the name it was uploaded under (for tests)."""

    sizes: list[StoredFile]
    upload_name: str | None = None

    @property
    def largest(self) -> StoredFile:
        return self.sizes[-1]

    def photo_sizes(self) -> list[dict[str, Any]]:
        return [size.photo_size() for size in self.sizes]


@dataclass
class FileStore:
    """All files by id and by download path; thread-safe on its own (used under no other lock)."""

    files: dict[str, StoredFile] = field(default_factory=dict)
    photos: dict[str, StoredPhoto] = field(default_factory=dict)
    paths: dict[str, StoredFile] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _new_ids(self, kind: str) -> tuple[str, str]:
        """Opaque, unique ids shaped like Telegram's (type prefix, then url-safe base64)."""
        number = next(self._counter).to_bytes(4, "big")
        raw = b"\x02\x00\x0c\x19\x01" + secrets.token_bytes(7) + number + secrets.token_bytes(24)
        file_id = _ID_PREFIX[kind] + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        unique = secrets.token_bytes(3) + number + secrets.token_bytes(5)
        return file_id, "AQAD" + base64.urlsafe_b64encode(unique).decode().rstrip("=")

    def add_photo(self, data: bytes, upload_name: str | None = None) -> StoredPhoto:
        """Store an uploaded photo; refuse what Telegram's photo processing refuses."""
        if not data:
            raise bad_request("file must be non-empty")
        if len(data) > MAX_PHOTO_BYTES:
            raise bad_request(
                f"file of size {len(data)} bytes is too big for a photo; "
                f"the maximum size is {MAX_PHOTO_BYTES} bytes"
            )
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                thumbnail = _thumbnail(image) if max(width, height) > THUMBNAIL_SIDE else None
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise bad_request("IMAGE_PROCESS_FAILED") from error
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        sizes: list[StoredFile] = []
        if thumbnail is not None:
            small_bytes, small_width, small_height = thumbnail
            sizes.append(self._photo_size(small_bytes, small_width, small_height))
        sizes.append(self._photo_size(data, width, height))
        photo = StoredPhoto(sizes=sizes, upload_name=upload_name)
        with self._lock:
            for size in sizes:
                self.files[size.file_id] = size
                self.photos[size.file_id] = photo
        return photo

    def _photo_size(self, data: bytes, width: int, height: int) -> StoredFile:
        file_id, unique_id = self._new_ids("photo")
        return StoredFile(file_id, unique_id, "photo", data, "image/jpeg", None, width, height)

    def add_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        """Store a document, sticker or voice note."""
        if not data:
            raise bad_request("file must be non-empty")
        guessed = mimetypes.guess_type(file_name or "", strict=False)[0]
        mime = mime_type or guessed or "application/octet-stream"
        file_id, unique_id = self._new_ids(kind)
        stored = StoredFile(file_id, unique_id, kind, data, mime, file_name, width, height)
        with self._lock:
            self.files[file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self.files.get(file_id)

    def photo(self, file_id: str) -> StoredPhoto | None:
        with self._lock:
            return self.photos.get(file_id)

    def resolve(self, file_id: str, kind: str) -> StoredFile:
        """A file the bot re-sends by id; Telegram's errors for unknown or mismatched ids."""
        stored = self.get(file_id)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise bad_request(
                f"can't use file of type {_TYPE_NAME[stored.kind]} as {_TYPE_NAME[kind]}"
            )
        return stored

    def assign_path(self, stored: StoredFile) -> str:
        """The `file_path` getFile returns; stable per file."""
        with self._lock:
            if stored.file_path is None:
                extension = _extension(stored)
                stored.file_path = f"{_PATH_FOLDER[stored.kind]}/file_{len(self.paths)}{extension}"
                self.paths[stored.file_path] = stored
            return stored.file_path

    def by_path(self, path: str) -> StoredFile | None:
        with self._lock:
            return self.paths.get(path)


def _extension(stored: StoredFile) -> str:
    if stored.kind == "photo":
        return ".jpg"
    if stored.file_name and "." in stored.file_name:
        return "." + stored.file_name.rsplit(".", 1)[1]
    return mimetypes.guess_extension(stored.mime_type, strict=False) or ""


def _thumbnail(image: Image.Image) -> tuple[bytes, int, int]:
    """A <=320 px JPEG; `draft` lets the JPEG decoder downscale cheaply while decoding."""
    image.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue(), small.width, small.height


def client_compressed_jpeg(data: bytes, max_side: int = 2560) -> bytes:
    """What a Telegram app uploads for a picked photo: JPEG, long side <= 2560 px.

    Used by the web chat, whose users pick PNGs and 12-megapixel phone photos alike; the Python
    API sends the bytes it is given unchanged so tests can compare them after download.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            rotated = image.getexif().get(0x0112, 1) != 1  # EXIF orientation
            if image.format == "JPEG" and max(image.size) <= max_side and not rotated:
                return data
            image.draft("RGB", (max_side, max_side))
            converted = ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError("not an image Telegram could send as a photo") from error
    converted.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    converted.save(buffer, format="JPEG", quality=87)
    return buffer.getvalue()


def placeholder_image(size: int, color: tuple[int, int, int], image_format: str) -> bytes:
    """A small solid image, for the stickers fake users send."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format=image_format)
    return buffer.getvalue()
