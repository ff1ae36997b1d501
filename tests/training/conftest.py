"""A tiny synthetic dataset in the shared data's exact layout, for smoke tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 50, 220),
           "yellow": (235, 225, 30), "black": (10, 10, 10), "white": (245, 245, 245)}
SHAPES = ("square", "stripe", "dot")
RU_COLOURS = {"red": "красный", "green": "зелёный", "blue": "синий", "yellow": "жёлтый",
              "black": "чёрный", "white": "белый"}
RU_SHAPES = {"square": "квадрат", "stripe": "полоса", "dot": "точка"}


def _draw(colour: tuple[int, int, int], shape: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.full((224, 224, 3), 128, dtype=np.uint8) + rng.integers(0, 20, (224, 224, 3),
                                                                        dtype=np.uint8)
    if shape == "square":
        pixels[40:180, 40:180] = colour
    elif shape == "stripe":
        pixels[90:130, :] = colour
    else:
        yy, xx = np.mgrid[:224, :224]
        pixels[(yy - 112) ** 2 + (xx - 112) ** 2 < 50 ** 2] = colour
    return Image.fromarray(pixels)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/flickr8k + data/seed + data/ru with 36 photos of coloured shapes."""
    root = tmp_path_factory.mktemp("data")
    flickr = root / "flickr8k"
    images = flickr / "images_224"
    images.mkdir(parents=True)
    names: list[str] = []
    tokens: list[str] = []
    english: dict[str, str] = {}
    for i, (colour, rgb) in enumerate(COLOURS.items()):
        for j, shape in enumerate(SHAPES):
            for copy in range(2):
                name = f"{i}{j}{copy}_{colour}_{shape}.jpg"
                _draw(rgb, shape, seed=i * 10 + j * 3 + copy).save(images / name)
                names.append(name)
                captions = [f"a {colour} {shape} on grey", f"one {shape} painted {colour}",
                            f"{colour} {shape}", f"a picture of a {colour} {shape}",
                            f"grey background with a {colour} {shape}"]
                for n, caption in enumerate(captions):
                    tokens.append(f"{name}#{n}\t{caption}")
                english[name] = f"{RU_COLOURS[colour]} {RU_SHAPES[shape]}"
    (flickr / "Flickr8k.token.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    train, dev, test = names[0::3] + names[1::3], names[2::3][:6], names[2::3][6:]
    for split, members in (("train", train), ("dev", dev), ("test", test)):
        (flickr / f"Flickr_8k.{split}Images.txt").write_text("\n".join(members) + "\n")
    seed = root / "seed"
    seed.mkdir()
    seed_photos = dev[:3]
    with (seed / "test_images.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["image"], *[[n] for n in seed_photos]])
    lines = ["|query_id|query_text|image"]
    k = 0
    for name in seed_photos:
        for n in range(2):
            caption = tokens[names.index(name) * 5 + n].split("\t")[1]
            lines.append(f"{k}|{name}#{n}|{caption}|{name}")
            k += 1
    (seed / "test_queries.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ru = root / "ru"
    ru.mkdir()
    def write(name: str, ids: list[str]) -> None:
        rows = ["query_id\tru"] + [f"{q}\t{english[q.split('#')[0]]}" for q in ids]
        (ru / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    write("seed_test", [f"{n}#{i}" for n in seed_photos for i in range(2)])
    write("flickr8k_test", [f"{n}#0" for n in test])
    write("dev_calibration", [f"{n}#0" for n in dev if n not in seed_photos])
    return root
