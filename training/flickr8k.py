"""Flickr8k as shipped in `../shared/data/flickr8k`: captions, official splits, photo paths.

The seed set is drawn from Flickr8k: the seed's train photos are the official TEST split and
its 100 test photos belong to DEV. To keep results honest, DEV used for early stopping must
exclude those 100 (`dev_split(exclude=...)`).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Flickr8k:
    """Paths into one Flickr8k directory."""

    root: Path

    @property
    def images_dir(self) -> Path:
        return self.root / "images_224"

    def captions(self) -> dict[str, list[str]]:
        """Image file name → its captions, in caption-number order.

        The token file has one known quirk (`2258277193_586949ec62.jpg.1#0`); such a name is
        mapped back to the image it belongs to.
        """
        by_image: dict[str, dict[int, str]] = defaultdict(dict)
        with (self.root / "Flickr8k.token.txt").open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                key, _, caption = line.rstrip("\n").partition("\t")
                image, _, number = key.partition("#")
                if not image.endswith(".jpg"):
                    image = image[: image.index(".jpg") + 4]
                by_image[image][int(number)] = caption.strip()
        return {image: [c for _, c in sorted(caps.items())] for image, caps in by_image.items()}

    def split(self, name: str) -> list[str]:
        """Image names of the official `train`, `dev` or `test` split that exist on disk."""
        files = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
                 "test": "Flickr_8k.testImages.txt"}
        if name not in files:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(files)}")
        names = (self.root / files[name]).read_text(encoding="utf-8").split()
        return [n for n in names if (self.images_dir / n).exists()]


def seed_test_images(seed_root: Path) -> list[str]:
    """The seed's 100 test photos (they lie in Flickr8k DEV and must not tune anything)."""
    with (seed_root / "test_images.csv").open(encoding="utf-8") as handle:
        return [row["image"] for row in csv.DictReader(handle)]


def dev_split(data: Flickr8k, seed_root: Path) -> list[str]:
    """Flickr8k DEV minus the seed's test photos: the only split we tune on."""
    held_out = set(seed_test_images(seed_root))
    return [name for name in data.split("dev") if name not in held_out]
