"""Tower features cached on disk, so that retraining heads takes minutes, not an hour.

A cache file holds one tower's features for one ordered list of inputs; its name carries a
hash of that list, so a changed list never reads stale features.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from engine.encoders.towers import EfficientNetLiteTower, make_text_tower
from engine.images import open_photo, to_array

log = logging.getLogger(__name__)


def _digest(items: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(items).encode("utf-8")).hexdigest()[:16]


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz next to its final name, then rename: a killed run leaves no half file,
    and two runs filling the same cache at once (a per-process temporary name) cannot mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    cast(Any, np.savez)(tmp, **arrays)
    os.replace(tmp, path)


def _batches(paths: Sequence[Path], size: int, batch_size: int, flip: bool
             ) -> Iterator[np.ndarray]:
    """Decode photos on a thread pool (PIL releases the GIL) while the tower runs."""

    def load(path: Path) -> Image.Image:
        image = open_photo(path, size)
        return ImageOps.mirror(image) if flip else image

    with ThreadPoolExecutor(max_workers=2) as pool:
        chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = pool.map(lambda chunk: to_array([load(p) for p in chunk]), chunks)
        yield from pending


class FeatureCache:
    """Tower features for lists of photos or texts, stored as float16 .npz files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def image_features(self, variant: str, paths: Sequence[Path], *, flip: bool = False,
                       batch_size: int = 32) -> dict[str, np.ndarray]:
        """Every feature block of `EfficientNetLiteTower(variant)` for `paths`, in order."""
        key = _digest([str(p) for p in paths])
        file = self.root / f"image-{variant}-{'flip' if flip else 'orig'}-{key}.npz"
        if file.exists():
            with np.load(file) as data:
                return {name: data[name].astype(np.float32) for name in data.files}
        tower = EfficientNetLiteTower(variant)
        parts: dict[str, list[np.ndarray]] = {}
        desc = f"{tower.name}{' (flipped)' if flip else ''}"
        with tqdm(total=len(paths), desc=desc, unit="photo") as bar:
            for pixels in _batches(paths, tower.input_size, batch_size, flip):
                for name, block in tower.features(pixels).items():
                    parts.setdefault(name, []).append(block.astype(np.float16))
                bar.update(len(pixels))
        arrays = {name: np.concatenate(blocks) for name, blocks in parts.items()}
        _save_atomic(file, arrays)
        return {name: block.astype(np.float32) for name, block in arrays.items()}

    def text_features(self, tower_name: str, texts: Sequence[str], batch_size: int = 256
                      ) -> np.ndarray:
        """L2-normalised embeddings of `texts` by the text tower `tower_name`, in order."""
        file = self.root / f"text-{tower_name}-{_digest(list(texts))}.npz"
        if file.exists():
            with np.load(file) as data:
                return np.asarray(data["features"], dtype=np.float32)
        tower = make_text_tower(tower_name)
        parts = []
        for start in tqdm(range(0, len(texts), batch_size), desc=tower.name, unit="batch"):
            parts.append(tower.encode(texts[start:start + batch_size]))
        features = np.concatenate(parts) if parts else np.zeros((0, tower.dim), np.float32)
        _save_atomic(file, {"features": features.astype(np.float16)})
        return features
