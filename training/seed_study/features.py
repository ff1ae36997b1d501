"""Tower features for the study's texts and photos, cached on disk, and the pair vectors.

Three feature families, each computed once and stored as float16 `.npz` under the cache
folder (default `.cache/features`); a file's name carries a hash of the tower and of the
ordered inputs (photo paths resolved, so `../data` and `/abs/data` share a cache):

- text: MiniLM (packaged) or any local Hugging Face BERT directory;
- photos: EfficientNet-Lite0 (packaged) or ResNet-18 from a local weights file;
- the dual encoder's embeddings of the same texts and photos (through the engine's own
  encoder code, so "dual cosine" here is exactly what the engine ranks by).

The extractors live in `engine.rerank` because the engine's re-ranker must compute the very
same features at query time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.encoders.base import Encoder, encode_images
from engine.images import ImagePrep
from engine.rerank import ImageFeatures, TextFeatures
from training.features import _batches, _digest, _save_atomic

log = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return _digest([name])[:8] if ("/" in name or ":" in name) else name.replace("@", "-")


def cached_matrix(cache_dir: Path, kind: str, tower: str, keys: Sequence[str],
                  compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Load `kind-tower-hash.npz` or compute it, save it atomically and return float32."""
    file = cache_dir / f"seed-{kind}-{_slug(tower)}-{_digest([tower, *keys])}.npz"
    if file.exists():
        with np.load(file) as data:
            return np.asarray(data["features"], dtype=np.float32)
    features = np.asarray(compute(), dtype=np.float32)
    _save_atomic(file, {"features": features.astype(np.float16)})
    log.info("cached %s features %s in %s", kind, features.shape, file)
    return features


def _photo_keys(paths: Sequence[Path], extra: str) -> list[str]:
    return [extra, *(str(p.resolve()) for p in paths)]


def _weights_stamp(tower_name: str) -> str:
    """Size and mtime of a weights file named in the tower (a new file → new cache)."""
    _, _, path = tower_name.partition(":")
    weights = Path(path)
    if path and weights.exists():
        stat = weights.stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    return ""


def _encoder_stamp(encoder: Encoder) -> str:
    """Size and mtime of a dual-encoder artifact's weights: a retrained model with an unchanged
    version string must not read stale embeddings."""
    artifact = getattr(encoder, "artifact", None)
    if isinstance(artifact, Path) and (artifact / "heads.safetensors").exists():
        stat = (artifact / "heads.safetensors").stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    return ""


def text_features(cache_dir: Path, tower: TextFeatures, texts: Sequence[str],
                  batch_size: int = 128) -> np.ndarray:
    """(len(texts), dim) text-tower features, cached."""
    return cached_matrix(cache_dir, "text", tower.name, [_weights_stamp(tower.name), *texts],
                         lambda: _encode_batched(tower.encode, texts, batch_size,
                                                 tower.name, tower.dim))


def tower_pass(tower: ImageFeatures, paths: Sequence[Path], batch_size: int = 32
               ) -> np.ndarray:
    """(len(paths), dim) float32 image-tower features, computed now (no cache)."""
    parts = []
    with tqdm(total=len(paths), desc=f"photos {tower.name}", unit="photo") as bar:
        for pixels in _batches(paths, tower.input_size, batch_size, flip=False):
            parts.append(tower.features(pixels))
            bar.update(len(pixels))
    return np.concatenate(parts) if parts else np.zeros((0, tower.dim), np.float32)


def image_features(cache_dir: Path, tower: ImageFeatures, paths: Sequence[Path],
                   batch_size: int = 32, compute: Callable[[], np.ndarray] | None = None
                   ) -> np.ndarray:
    """(len(paths), dim) image-tower features of photos squashed to the tower's input.

    `compute` replaces the tower pass on a cache miss (it must return the same features).
    """
    keys = _photo_keys(paths, f"squash{tower.input_size}|{_weights_stamp(tower.name)}")
    return cached_matrix(cache_dir, "image", tower.name, keys,
                         compute or (lambda: tower_pass(tower, paths, batch_size)))


def dual_text_embeddings(cache_dir: Path, encoder: Encoder, texts: Sequence[str],
                         batch_size: int = 64) -> np.ndarray:
    """The encoder's query embeddings (what the engine computes for a search)."""
    return cached_matrix(cache_dir, "dual-text", encoder.name,
                         [_encoder_stamp(encoder), *texts],
                         lambda: _encode_batched(encoder.encode_texts, texts, batch_size,
                                                 encoder.name, encoder.dim))


def _encode_batched(encode: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str],
                    batch_size: int, name: str, dim: int) -> np.ndarray:
    """`encode` over `texts` in batches, with a progress bar; (0, dim) for no texts."""
    parts = [encode(texts[i:i + batch_size])
             for i in tqdm(range(0, len(texts), batch_size), desc=f"text {name}", unit="batch")]
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def dual_image_embeddings(cache_dir: Path, encoder: Encoder, paths: Sequence[Path],
                          batch_size: int = 32, compute: Callable[[], np.ndarray] | None = None
                          ) -> np.ndarray:
    """The encoder's photo embeddings (what `python -m engine index` stores).

    `compute` replaces the encoder pass on a cache miss (it must return the same embeddings).
    """
    def encode() -> np.ndarray:
        parts = []
        with tqdm(total=len(paths), desc=f"photos {encoder.name}", unit="photo") as bar:
            for start in range(0, len(paths), batch_size):
                chunk = list(paths[start:start + batch_size])
                parts.append(encode_images(encoder, chunk, batch_size))
                bar.update(len(chunk))
        return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)

    prep = encoder.image_prep
    keys = _photo_keys(paths, f"{prep.mode}{prep.size}|{_encoder_stamp(encoder)}")
    return cached_matrix(cache_dir, "dual-image", encoder.name, keys, compute or encode)


def shared_image_head(encoder: Encoder, tower: ImageFeatures
                      ) -> Callable[[np.ndarray], np.ndarray] | None:
    """The encoder's image head over `tower`'s features, when its image side IS that tower.

    Our dual encoder reads EfficientNet-Lite0's `final_mean` of photos squashed to 224, which
    is exactly the seed-style photo feature: one tower pass then serves both (the slowest step
    of the study on a 2-core machine). None for any other encoder or tower.
    """
    from engine.encoders.dual import DualEncoder

    if not isinstance(encoder, DualEncoder) or tower.name != "lite0":
        return None
    config = encoder.config
    if (tuple(config.image_towers) != ("lite0",) or tuple(config.image_blocks) != ("final_mean",)
            or encoder.image_prep != ImagePrep(tower.input_size, "squash")):
        return None
    heads = encoder.heads

    def project(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: torch.Tensor = heads.image(torch.from_numpy(np.asarray(features, np.float32)))
        return out.numpy().astype(np.float32)

    return project


def photo_views(cache_dir: Path, tower: ImageFeatures, encoder: Encoder, paths: Sequence[Path]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Seed-style photo features and dual-encoder photo embeddings, both cached.

    When `shared_image_head` applies, a cache miss runs the tower once (float32, in memory)
    for both; otherwise each side runs its own pass.
    """
    project = shared_image_head(encoder, tower)
    if project is None:
        return (image_features(cache_dir, tower, paths),
                dual_image_embeddings(cache_dir, encoder, paths))
    computed: list[np.ndarray] = []

    def once() -> np.ndarray:
        if not computed:
            computed.append(tower_pass(tower, paths))
        return computed[0]

    dual = dual_image_embeddings(cache_dir, encoder, paths, compute=lambda: project(once()))
    seed = image_features(cache_dir, tower, paths, compute=once)
    return seed, dual
