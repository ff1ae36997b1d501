"""Photo decoding: orientation, cheap decoding, odd modes, broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.images import ImagePrep, UnreadablePhotoError, is_photo_path, open_photo, thumbnail_jpeg


def _two_tone(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2:] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Orientation 6 means "rotate 90° clockwise to display": the left (red) half ends up on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    _two_tone(64, 32).save(path, exif=exif, quality=95)
    pixels = np.asarray(open_photo(path, ImagePrep(32)))
    top, bottom = pixels[:8].mean(axis=(0, 1)), pixels[-8:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_large_jpeg_is_decoded_to_the_requested_square(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _two_tone(4000, 3000).save(path, quality=90)
    image = open_photo(path, ImagePrep(224))
    assert image.size == (224, 224) and image.mode == "RGB"
    # Squashed, not cropped: both colours survive in equal parts.
    pixels = np.asarray(image)
    assert pixels[:, :100, 0].mean() > 200 and pixels[:, -100:, 2].mean() > 200


def test_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, 100:200] = (0, 255, 0)
    Image.fromarray(pixels).save(path)
    cropped = np.asarray(open_photo(path, ImagePrep(50, "center_crop")))
    assert cropped[:, :, 1].mean() > 240


def test_transparent_png_is_flattened_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(path)
    pixels = np.asarray(open_photo(path, 16))
    assert pixels.min() == 255


def test_webp_and_bytes_are_accepted(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    _two_tone(40, 40).save(buffer, format="WEBP")
    assert open_photo(buffer.getvalue(), 24).size == (24, 24)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"0" * 50])
def test_broken_files_raise_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadablePhotoError, match=r"broken\.jpg"):
        open_photo(path, 32)


def test_truncated_jpeg_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    buffer = io.BytesIO()
    _two_tone(400, 300).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    with pytest.raises(UnreadablePhotoError):
        open_photo(path, 32)


def test_photo_suffixes() -> None:
    assert is_photo_path(Path("a/B.JPG")) and is_photo_path(Path("x.webp"))
    assert not is_photo_path(Path("notes.txt")) and not is_photo_path(Path(".hidden.jpg"))
    assert not is_photo_path(Path("scan.tif"))


def test_thumbnail_respects_long_side(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _two_tone(3000, 1500).save(path)
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(path, 1280)))
    assert max(thumb.size) == 1280 and thumb.size[0] == 2 * thumb.size[1]
