"""Contrastive training of the dual encoder's projection heads on cached tower features.

Recipe: symmetric InfoNCE over a batch of photos, each paired with one of its captions drawn at
random every epoch, a learnable temperature, AdamW, strong input dropout (the towers are frozen,
so the heads overfit quickly), horizontal-flip feature augmentation for photos, and "tower
dropout" that hides the English-only text tower at random so the same head also serves Russian
queries through the multilingual tower alone. Early stopping on Flickr8k DEV without the seed's
test photos.

With `frozen_image`, only the text head (and the temperature) learns, against the fixed photo
embeddings of an existing model: that trains a query head (`training.query_head`) that lands
in the existing space, so nothing already indexed has to be embedded again.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine.encoders.dual import ENGLISH_ONLY_TOWERS, DualConfig, DualHeads
from engine.encoders.heads import HeadSpec, ProjectionHead
from training.features import FeatureCache
from training.flickr8k import Flickr8k
from training.gloss_augment import RoundTripGlosser
from training.metrics import retrieval_report, target_ranks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run (recorded in the model card)."""

    image_towers: tuple[str, ...] = ("lite0",)
    image_blocks: tuple[str, ...] = ("final_mean",)
    text_towers: tuple[str, ...] = ("minilm", "e5")
    embed_dim: int = 256
    image_head: str = "linear"
    text_head: str = "linear"
    hidden: int = 1024
    head_dropout: float = 0.1
    image_dropout: float = 0.7
    text_dropout: float = 0.2
    tower_dropout: float = 0.0
    gloss_aug: float = 0.0
    russian: str = "gloss"
    russian_masked: tuple[str, ...] = ()
    flip: bool = True
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 80
    patience: int = 12
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SplitFeatures:
    """Tower features of one split: photos, captions, and which photo each caption describes."""

    images: list[str]
    image_x: np.ndarray
    image_x_flip: np.ndarray | None
    text_x: np.ndarray
    caption_image: np.ndarray
    captions: list[str] = field(default_factory=list)
    text_x_gloss: np.ndarray | None = None


class FeatureStore:
    """Cached tower features of the whole Flickr8k photo set, sliced by split on demand."""

    def __init__(self, data: Flickr8k, cache: FeatureCache) -> None:
        self.data = data
        self.cache = cache
        self.captions = data.captions()
        self.all_images = sorted(n for n in self.captions if (data.images_dir / n).exists())
        self.position = {name: i for i, name in enumerate(self.all_images)}
        self.all_texts = [c for n in self.all_images for c in self.captions[n]]
        starts = np.cumsum([0] + [len(self.captions[n]) for n in self.all_images])
        self.caption_rows = {n: range(starts[i], starts[i + 1])
                             for i, n in enumerate(self.all_images)}

    def image_matrix(self, towers: Sequence[str], blocks: Sequence[str], flip: bool) -> np.ndarray:
        paths = [self.data.images_dir / n for n in self.all_images]
        parts: list[np.ndarray] = []
        for tower in towers:
            feats = self.cache.image_features(tower, paths, flip=flip)
            parts.extend(feats[b] for b in blocks)
        return np.concatenate(parts, axis=1)

    def text_matrix(self, towers: Sequence[str]) -> np.ndarray:
        return np.concatenate([self.cache.text_features(t, self.all_texts) for t in towers], axis=1)

    def texts_features(self, tower: str, texts: Sequence[str]) -> np.ndarray:
        """Features of arbitrary texts, taken from the caption cache when they are captions.

        Evaluation queries are mostly Flickr8k captions already embedded; only the rest
        (translations, glosses) are run through the tower (and cached on their own).
        """
        known = self.cache.text_features(tower, self.all_texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.text_rows]
        extra = self.cache.text_features(tower, missing) if missing else known[:0]
        extra_row = {t: i for i, t in enumerate(missing)}
        rows = [known[self.text_rows[t]] if t in self.text_rows else extra[extra_row[t]]
                for t in texts]
        return np.stack(rows) if rows else known[:0]

    @cached_property
    def text_rows(self) -> dict[str, int]:
        """Caption text → its first row in the caption cache."""
        rows: dict[str, int] = {}
        for row, text in enumerate(self.all_texts):
            rows.setdefault(text, row)
        return rows

    def gloss_text_matrix(self, towers: Sequence[str]) -> np.ndarray:
        """Like `text_matrix`, but English-only towers read the round-trip gloss of each caption
        (what a Russian translation of it would look like after glossing)."""
        glosser = RoundTripGlosser()
        glosses = [glosser.gloss(t) for t in self.all_texts]
        return np.concatenate([
            self.cache.text_features(t, glosses if t in ENGLISH_ONLY_TOWERS else self.all_texts)
            for t in towers], axis=1)

    def split(self, names: Sequence[str], config: TrainConfig, training: bool) -> SplitFeatures:
        """Features of the photos `names` and their captions; training splits also get the
        flipped photos and the gloss-style captions when the recipe uses them."""
        with_flip = training and config.flip
        rows = np.array([self.position[n] for n in names])
        image_x = self.image_matrix(config.image_towers, config.image_blocks, flip=False)[rows]
        image_x_flip = (self.image_matrix(config.image_towers, config.image_blocks, flip=True)[rows]
                        if with_flip else None)
        text_all = self.text_matrix(config.text_towers)
        text_rows = [r for n in names for r in self.caption_rows[n]]
        caption_image = np.array([i for i, n in enumerate(names) for _ in self.caption_rows[n]])
        gloss = (self.gloss_text_matrix(config.text_towers)[text_rows]
                 if training and config.gloss_aug > 0 else None)
        return SplitFeatures(images=list(names), image_x=image_x, image_x_flip=image_x_flip,
                             text_x=text_all[text_rows], caption_image=caption_image,
                             captions=[self.all_texts[r] for r in text_rows], text_x_gloss=gloss)


def build_heads(config: TrainConfig, image_dim: int, text_dim: int, name: str, version: str,
                image_space: str | None = None) -> DualHeads:
    """Fresh heads for `config`; `image_space` marks a query head trained against that
    model's frozen image head (see `DualConfig.image_space`)."""
    extra: dict[str, Any] = {"train_config": config.to_dict(), "russian": config.russian,
                             "russian_masked": list(config.russian_masked)}
    if image_space is not None:
        extra = {"role": "query-head", "image_space": image_space, **extra}
    dual = DualConfig(
        name=name, version=version, image_towers=config.image_towers,
        image_blocks=config.image_blocks, text_towers=config.text_towers,
        image_head=HeadSpec(image_dim, config.embed_dim, config.image_head, config.hidden,
                            config.head_dropout),
        text_head=HeadSpec(text_dim, config.embed_dim, config.text_head, config.hidden,
                           config.head_dropout),
        extra=extra,
    )
    return DualHeads(dual)


def _statistics(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x.mean(0)).float(), torch.from_numpy(x.std(0)).float()


def embed_split(heads: DualHeads, split: SplitFeatures, masked: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Photo and caption embeddings of a split with the current heads (eval mode)."""
    heads.eval()
    with torch.inference_mode():
        image = heads.image(torch.from_numpy(split.image_x).float()).numpy()
        flags = torch.full((len(split.text_x),), masked, dtype=torch.bool)
        text = heads.encode_text_features(torch.from_numpy(split.text_x).float(), flags).numpy()
    return image, text


def evaluate(heads: DualHeads, split: SplitFeatures, masked: bool = False) -> dict[str, float]:
    """Text→photo Recall@1/5/10 and MRR over the split's photos."""
    image, text = embed_split(heads, split, masked)
    return retrieval_report(target_ranks(text @ image.T, split.caption_image))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: the heads' matrices are small, and on a busy 2-core machine
    OpenMP barriers waiting for preempted threads made training 10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class FrozenImage:
    """An existing model's image head to train a query head against (`name` is its
    `name@version`, recorded as the query head's image space)."""

    head: ProjectionHead
    name: str


@dataclass(frozen=True)
class Distillation:
    """Texts beyond the captions, with the vectors a teacher head gives them: each step also
    pulls the text head's vectors of a batch of them toward the teacher's (cosine loss times
    `weight`). A query head distilled from its base over a broad vocabulary keeps what the
    base knows about words Flickr captions rarely use ("coffee")."""

    features: np.ndarray
    targets: np.ndarray
    weight: float


def train_heads(config: TrainConfig, train: SplitFeatures, dev: SplitFeatures,
                name: str = "dual", version: str = "0", progress: bool = True,
                frozen_image: FrozenImage | None = None, distill: Distillation | None = None
                ) -> tuple[DualHeads, list[dict[str, float]]]:
    """Train heads; return the best-on-DEV heads and the per-epoch history."""
    with single_thread():
        return _train_heads(config, train, dev, name, version, progress, frozen_image, distill)


def _train_heads(config: TrainConfig, train: SplitFeatures, dev: SplitFeatures, name: str,
                 version: str, progress: bool, frozen_image: FrozenImage | None,
                 distill: Distillation | None) -> tuple[DualHeads, list[dict[str, float]]]:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    heads = build_heads(config, train.image_x.shape[1], train.text_x.shape[1], name, version,
                        frozen_image.name if frozen_image is not None else None)
    stacked = (np.concatenate([train.image_x, train.image_x_flip])
               if train.image_x_flip is not None else train.image_x)
    fixed_image: torch.Tensor | None = None
    if frozen_image is not None:
        heads.image.load_state_dict(frozen_image.head.state_dict())
        heads.image.requires_grad_(False)
        with torch.inference_mode():
            fixed_image = heads.image.eval()(torch.from_numpy(train.image_x).float()).clone()
    else:
        heads.image.set_statistics(*_statistics(stacked))
    heads.text.set_statistics(*_statistics(train.text_x))

    optimizer = torch.optim.AdamW([p for p in heads.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train.images) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.05)
    image_drop, text_drop = nn.Dropout(config.image_dropout), nn.Dropout(config.text_dropout)
    dropped_block = (1 - heads.russian_keep).bool()

    captions_of: list[np.ndarray] = [np.flatnonzero(train.caption_image == i)
                                     for i in range(len(train.images))]
    image_x = torch.from_numpy(train.image_x).float()
    image_flip = (torch.from_numpy(train.image_x_flip).float()
                  if train.image_x_flip is not None else None)
    text_x = torch.from_numpy(train.text_x).float()
    text_gloss = (torch.from_numpy(train.text_x_gloss).float()
                  if train.text_x_gloss is not None else None)

    distill_x = (torch.from_numpy(distill.features).float() if distill is not None else None)
    distill_y = (torch.from_numpy(distill.targets).float() if distill is not None else None)

    best: tuple[float, dict[str, Any]] | None = None
    history: list[dict[str, float]] = []
    stale = 0
    bar = tqdm(range(config.epochs), desc="train heads", unit="epoch", disable=not progress)
    for epoch in bar:
        heads.train()
        started = time.perf_counter()
        order = rng.permutation(len(train.images))
        losses = []
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            if len(batch) < 2:
                continue
            chosen = np.array([rng.choice(captions_of[i]) for i in batch])
            if fixed_image is not None:
                z_img = fixed_image[batch]
            else:
                x_img = image_x[batch]
                if image_flip is not None:
                    use_flip = torch.from_numpy(rng.random(len(batch)) < 0.5)
                    x_img = torch.where(use_flip[:, None], image_flip[batch], x_img)
                z_img = heads.image.project(image_drop(heads.image.standardise(x_img)))
            x_txt = text_x[chosen]
            if text_gloss is not None:
                use_gloss = torch.from_numpy(rng.random(len(batch)) < config.gloss_aug)
                x_txt = torch.where(use_gloss[:, None], text_gloss[chosen], x_txt)
            z_txt = text_drop(heads.text.standardise(x_txt))
            if config.tower_dropout > 0 and dropped_block.any():
                hide = torch.from_numpy(rng.random(len(batch)) < config.tower_dropout)
                z_txt = torch.where(hide[:, None] & dropped_block[None, :],
                                    torch.zeros_like(z_txt), z_txt)
            z_txt = heads.text.project(z_txt)
            z_img = nn.functional.normalize(z_img, dim=-1)
            z_txt = nn.functional.normalize(z_txt, dim=-1)
            logits = heads.logit_scale.clamp(max=math.log(100)).exp() * z_img @ z_txt.T
            labels = torch.arange(len(batch))
            loss = (nn.functional.cross_entropy(logits, labels)
                    + nn.functional.cross_entropy(logits.T, labels)) / 2
            if distill_x is not None and distill_y is not None and distill is not None:
                rows = torch.from_numpy(rng.integers(0, len(distill_x), len(batch)))
                student = heads.text.project(text_drop(heads.text.standardise(distill_x[rows])))
                agreement = nn.functional.cosine_similarity(student, distill_y[rows], dim=-1)
                loss = loss + distill.weight * (1 - agreement).mean()
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        metrics = evaluate(heads, dev)
        score = metrics["R@1"] + metrics["R@5"] + metrics["R@10"]
        record = {"epoch": float(epoch), "loss": float(np.mean(losses)), "score": score,
                  "seconds": time.perf_counter() - started,
                  **{f"dev_{k}": v for k, v in metrics.items() if k != "n"}}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", dev_r5=f"{metrics['R@5']:.3f}")
        if best is None or score > best[0]:
            best, stale = (score, copy.deepcopy(heads.state_dict())), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    assert best is not None
    heads.load_state_dict(best[1])
    return heads.eval(), history

