"""Folds by photo: a photo never sits in training and validation of the same fold."""

from __future__ import annotations

import numpy as np
import pytest

from training.seed_study.split import (
    PhotoLeakError,
    assert_no_photo_leakage,
    iter_folds,
    photo_folds,
)


def _images(n_photos: int = 23, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"p{int(i)}.jpg" for i in rng.integers(0, n_photos, size=400)]


def test_every_photo_lies_in_exactly_one_fold() -> None:
    images = _images()
    folds = photo_folds(images, 5)
    assert set(folds.tolist()) == {0, 1, 2, 3, 4}
    fold_of: dict[str, set[int]] = {}
    for image, fold in zip(images, folds, strict=True):
        fold_of.setdefault(image, set()).add(int(fold))
    assert all(len(f) == 1 for f in fold_of.values())


def test_iterated_folds_are_disjoint_by_photo_and_cover_every_pair() -> None:
    images = _images()
    seen = np.zeros(len(images), dtype=int)
    for _, train, val in iter_folds(photo_folds(images, 4), images):
        names = np.asarray(images)
        assert not set(names[train]) & set(names[val])
        assert len(train) + len(val) == len(images)
        seen[val] += 1
    assert (seen == 1).all()


def test_leakage_is_caught() -> None:
    images = ["a.jpg", "b.jpg", "a.jpg", "c.jpg"]
    with pytest.raises(PhotoLeakError, match=r"a\.jpg"):
        assert_no_photo_leakage(images, np.array([0, 1]), np.array([2, 3]))
    assert_no_photo_leakage(images, np.array([0, 2]), np.array([1, 3]))


def test_leaky_folds_are_refused_when_iterating() -> None:
    images = ["a.jpg", "a.jpg", "b.jpg", "c.jpg"]
    with pytest.raises(PhotoLeakError):
        list(iter_folds(np.array([0, 1, 0, 1]), images))


def test_too_few_photos_for_the_folds() -> None:
    with pytest.raises(ValueError, match="folds"):
        photo_folds(["a.jpg", "b.jpg", "a.jpg"], 3)
