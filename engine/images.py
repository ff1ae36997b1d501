"""Photo decoding shared by indexing, training and the bot.

Every photo, whatever its source, goes through the same steps so that an index built from a
folder of camera JPEGs and the features the heads were trained on agree: EXIF orientation
applied, converted to RGB, squashed (not cropped) to the tower's square input. Squashing
matches how the training photos were prepared (Flickr8k `images_224` are squashed), and it
keeps the whole frame, which matters when the query names something at the edge.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})

# Decompression bombs are an input error for us, not a reason to use gigabytes of memory.
Image.MAX_IMAGE_PIXELS = 200_000_000


class UnreadablePhotoError(ValueError):
    """The file is not a photo we can decode (corrupt, truncated, not an image)."""


@dataclass(frozen=True)
class ImagePrep:
    """How an encoder wants photos decoded: square side and how to get there.

    `squash` resizes the whole frame (our towers were trained on squashed photos);
    `center_crop` resizes the short side then crops the middle (CLIP's recipe).
    """

    size: int
    mode: Literal["squash", "center_crop"] = "squash"


def is_photo_path(path: Path) -> bool:
    """True for file names the indexer considers photos (by suffix, case-insensitive)."""
    return path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith(".")


def open_photo(source: Path | bytes, prep: ImagePrep | int) -> Image.Image:
    """Decode a photo cheaply into an RGB `prep.size`×`prep.size` image.

    For JPEGs `draft` lets libjpeg decode at 1/2, 1/4 or 1/8 scale, which is several times
    faster for camera-sized photos and loses nothing at the tower's resolution.
    """
    if isinstance(prep, int):
        prep = ImagePrep(prep)
    size = prep.size
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as raw:
            if raw.format == "JPEG":
                raw.draft("RGB", (size, size))
            image = _to_rgb(ImageOps.exif_transpose(raw))
        if prep.mode == "center_crop":
            return ImageOps.fit(image, (size, size), Image.Resampling.BICUBIC)
        return image.resize((size, size), Image.Resampling.BICUBIC)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        name = "photo bytes" if isinstance(source, bytes) else str(source)
        raise UnreadablePhotoError(f"cannot read {name}: {error}") from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white (what a viewer shows) and convert any mode to RGB."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def to_array(images: Iterable[Image.Image]) -> np.ndarray:
    """Stack RGB images of one size into a uint8 array of shape (N, H, W, 3)."""
    return np.stack([np.asarray(image, dtype=np.uint8) for image in images])


def thumbnail_jpeg(path: Path, long_side: int, quality: int = 85) -> bytes:
    """A downscaled JPEG of a photo (EXIF orientation applied), for sending or contact sheets."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (long_side, long_side))
            oriented = _to_rgb(ImageOps.exif_transpose(image))
            oriented.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            oriented.save(buffer, format="JPEG", quality=quality, optimize=True)
            return buffer.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        raise UnreadablePhotoError(f"cannot read {path}: {error}") from error
