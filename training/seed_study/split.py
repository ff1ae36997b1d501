"""Cross-validation folds by photo: no photo is ever in training and validation at once.

A random split by pair would put the same photo on both sides and let a regressor recognise
the photo instead of matching text to it. The fold of every pair is fixed once per photo, so
subsets of the data (expert pairs only, with or without crowd pairs) share the same folds and
their scores are comparable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class PhotoLeakError(AssertionError):
    """A photo appears in both the training and the validation part of a fold."""


def photo_folds(images: Sequence[str], n_splits: int) -> np.ndarray:
    """Fold number (0..n_splits-1) of every pair, by GroupKFold over the pair's photo."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(images)
    n_photos = len(set(groups.tolist()))
    if n_photos < n_splits:
        raise ValueError(f"{n_photos} photos cannot make {n_splits} folds; lower --folds")
    folds = np.full(len(groups), -1, dtype=np.int64)
    for number, (_, val) in enumerate(GroupKFold(n_splits=n_splits).split(groups, groups=groups)):
        folds[val] = number
    assert (folds >= 0).all()
    return folds


def assert_no_photo_leakage(images: Sequence[str], train: np.ndarray, val: np.ndarray) -> None:
    """Raise `PhotoLeakError` naming a photo found on both sides of a split."""
    names = np.asarray(images)
    shared = set(names[train].tolist()) & set(names[val].tolist())
    if shared:
        raise PhotoLeakError(f"{len(shared)} photo(s) in train and validation, e.g. "
                             f"{sorted(shared)[0]}")


def iter_folds(folds: np.ndarray, images: Sequence[str]
               ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, train rows, validation rows) for every fold, each checked for photo leakage."""
    for number in np.unique(folds):
        val = np.flatnonzero(folds == number)
        train = np.flatnonzero(folds != number)
        assert_no_photo_leakage(images, train, val)
        yield int(number), train, val
