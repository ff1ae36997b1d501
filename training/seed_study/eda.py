"""Exploration of the seed data: numbers (pure, from the tables) and plots (matplotlib, Agg).

What the customer's study looked at, made repeatable: expert scores and how far the three
experts agree, the crowd's shares, how expert and crowd labels overlap, pairs per photo and
per query, query lengths, photo sizes and formats, and how imbalanced the target is.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from training.seed_data import query_source_image
from training.seed_study.agreement import (
    category_counts,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_agreement,
)
from training.seed_study.dataset import SeedTables
from training.seed_study.metrics import spearman
from training.seed_study.target import EXPERT_SCORE_COLUMNS, KEY, aggregate_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoInfo:
    name: str
    split: str
    width: int
    height: int
    format: str
    mode: str


def photo_info(folder: Path, names: Sequence[str], split: str) -> list[PhotoInfo]:
    """Size, format and colour mode of each photo (header only, no decoding)."""
    out = []
    for name in names:
        with Image.open(folder / name) as image:
            out.append(PhotoInfo(name, split, image.width, image.height,
                                 str(image.format), image.mode))
    return out


def query_word_counts(train_pairs: pd.DataFrame) -> pd.Series:
    """Words per distinct training query (whitespace-separated tokens), one row a query."""
    texts = train_pairs.drop_duplicates("query_id")["query_text"].astype(str)
    return pd.Series([len(text.split()) for text in texts], index=texts.index, dtype=int)


def agreement_stats(expert: pd.DataFrame) -> dict[str, Any]:
    """Krippendorff's alpha (three levels), Fleiss' kappa, pairwise numbers, unanimity."""
    ratings = expert[list(EXPERT_SCORE_COLUMNS)].to_numpy(dtype=np.float64)
    complete = ratings[~np.isnan(ratings).any(axis=1)]
    spread = complete.max(axis=1) - complete.min(axis=1)
    return {
        "krippendorff_alpha_interval": krippendorff_alpha(ratings, "interval"),
        "krippendorff_alpha_ordinal": krippendorff_alpha(ratings, "ordinal"),
        "krippendorff_alpha_nominal": krippendorff_alpha(ratings, "nominal"),
        "fleiss_kappa": fleiss_kappa(category_counts(complete, np.arange(1, 5))),
        "unanimous_share": float((spread == 0).mean()),
        "max_spread_3_share": float((spread == 3).mean()),
        "pairwise": [vars(p) for p in pairwise_agreement(ratings)],
    }


def exploration_stats(tables: SeedTables, photos: Sequence[PhotoInfo]) -> dict[str, Any]:
    """Every number the exploration section reports (JSON-serialisable)."""
    expert, crowd = tables.expert, tables.crowd
    scores = expert[list(EXPERT_SCORE_COLUMNS)].stack().astype(int)
    both = expert.merge(crowd, on=KEY, how="inner")
    expert_keys = set(map(tuple, expert[KEY].to_numpy().tolist()))
    crowd_keys = set(map(tuple, crowd[KEY].to_numpy().tolist()))
    train_keys = set(map(tuple, tables.train_pairs[KEY].to_numpy().tolist()))
    known = set(tables.train_pairs["query_id"])
    aggregate = aggregate_target(expert, crowd)
    own = aggregate["image"] == aggregate["query_id"].map(query_source_image)
    words = query_word_counts(tables.train_pairs)
    test_words = pd.Series([len(q.text.split()) for q in tables.test_queries])
    sizes = pd.DataFrame([vars(p) for p in photos])
    expert_mean = both[list(EXPERT_SCORE_COLUMNS)].mean(axis=1)
    per_source = {}
    for source, group in aggregate.groupby("source"):
        per_source[str(source)] = {
            "pairs": len(group), "mean": float(group["target"].mean()),
            "share_zero": float((group["target"] == 0).mean()),
            "share_at_least_half": float((group["target"] >= 0.5).mean())}
    return {
        "pairs": {"train_dataset": len(tables.train_pairs), "expert": len(expert),
                  "crowd": len(crowd), "expert_and_crowd": len(expert_keys & crowd_keys),
                  "expert_only": len(expert_keys - crowd_keys),
                  "crowd_only": len(crowd_keys - expert_keys),
                  "crowd_in_train_dataset": len(crowd_keys & train_keys),
                  "aggregate": len(aggregate)},
        "queries": {"train_dataset": len(known), "crowd": int(crowd["query_id"].nunique()),
                    "crowd_without_text": len(set(crowd["query_id"]) - known),
                    "crowd_pairs_without_text": int((~crowd["query_id"].isin(known)).sum()),
                    "test": len(tables.test_queries)},
        "photos": {"train": int(tables.train_pairs["image"].nunique()),
                   "test": len(tables.test_images),
                   "formats": dict(Counter(f"{p.format} {p.mode}" for p in photos)),
                   "width_range": [int(sizes["width"].min()), int(sizes["width"].max())],
                   "height_range": [int(sizes["height"].min()), int(sizes["height"].max())]},
        "expert_scores": {str(k): int(v) for k, v in sorted(scores.value_counts().items())},
        "agreement": agreement_stats(expert),
        "crowd": {"mean_share": float(crowd["share_of_yes"].mean()),
                  "share_zero": float((crowd["share_of_yes"] == 0).mean()),
                  "votes": {str(k): int(v) for k, v in sorted(
                      (crowd["n_yes"] + crowd["n_no"]).value_counts().items())}},
        "expert_vs_crowd": {
            "pairs": len(both),
            "spearman": spearman(expert_mean.to_numpy(), both["share_of_yes"].to_numpy())},
        "per_photo": {"expert_mean": float(expert.groupby("image").size().mean()),
                      "crowd_mean": float(crowd.groupby("image").size().mean())},
        "per_query": {"expert_mean": float(expert.groupby("query_id").size().mean()),
                      "crowd_mean": float(crowd.groupby("query_id").size().mean())},
        "query_words": {"train_mean": float(words.mean()), "train_max": int(words.max()),
                        "test_mean": float(test_words.mean())},
        "target": per_source,
        "own_photo_pairs": {"pairs": int(own.sum()),
                            "mean_target": float(aggregate.loc[own, "target"].mean())
                            if own.any() else float("nan"),
                            "mean_target_other": float(aggregate.loc[~own, "target"].mean())},
    }


# ------------------------------------------------------------------------------------ plots


def _figure(ncols: int = 2, width: float = 9.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height))
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def exploration_plots(tables: SeedTables, photos: Sequence[PhotoInfo], out: Path
                      ) -> dict[str, Path]:
    """The exploration PNGs, written under `out`; returns {name: path}."""
    expert, crowd = tables.expert, tables.crowd
    aggregate = aggregate_target(expert, crowd)
    figures: dict[str, Path] = {}

    fig, (left, right) = _figure()
    for offset, column in zip((-0.25, 0.0, 0.25), EXPERT_SCORE_COLUMNS, strict=True):
        counts = expert[column].value_counts().reindex([1, 2, 3, 4], fill_value=0)
        left.bar(np.arange(1, 5) + offset, counts.to_numpy(), width=0.25, label=column)
    left.set(title="Expert scores (1 = no match, 4 = exact)", xlabel="score", ylabel="pairs")
    left.set_xticks([1, 2, 3, 4])
    left.legend(fontsize=7)
    spread = (expert[list(EXPERT_SCORE_COLUMNS)].max(axis=1)
              - expert[list(EXPERT_SCORE_COLUMNS)].min(axis=1))
    right.bar(spread.value_counts().sort_index().index,
              spread.value_counts().sort_index().to_numpy(), color="tab:gray")
    right.set(title="Expert disagreement per pair", xlabel="max − min score", ylabel="pairs")
    figures["expert"] = _save(fig, out / "eda_expert_scores.png")

    fig, (left, right) = _figure()
    left.hist(crowd["share_of_yes"], bins=20, color="tab:orange")
    left.set_yscale("log")
    left.set(title="Crowd share of “yes”", xlabel="share", ylabel="pairs (log)")
    both = expert.merge(crowd, on=KEY, how="inner")
    if len(both):
        mean = both[list(EXPERT_SCORE_COLUMNS)].mean(axis=1).round(2)
        groups = sorted(mean.unique())
        right.boxplot([both.loc[mean == g, "share_of_yes"] for g in groups],
                      positions=range(len(groups)))
        right.set_xticks(range(len(groups)), [f"{g:.1f}" for g in groups], fontsize=6,
                         rotation=90)
    right.set(title="Crowd share vs expert mean (shared pairs)", xlabel="expert mean",
              ylabel="crowd share")
    figures["crowd"] = _save(fig, out / "eda_crowd_vs_expert.png")

    fig, (left, right) = _figure()
    left.hist([expert.groupby("image").size(), crowd.groupby("image").size()], bins=20,
              label=["expert", "crowd"])
    left.set(title="Pairs per photo", xlabel="pairs", ylabel="photos")
    left.legend(fontsize=7)
    right.hist([expert.groupby("query_id").size(), crowd.groupby("query_id").size()], bins=20,
               label=["expert", "crowd"])
    right.set(title="Pairs per query", xlabel="pairs", ylabel="queries")
    right.legend(fontsize=7)
    figures["pairs"] = _save(fig, out / "eda_pairs_per_photo_query.png")

    fig, (left, right) = _figure()
    words = query_word_counts(tables.train_pairs)
    test_words = [len(q.text.split()) for q in tables.test_queries]
    left.hist([words, test_words], bins=20, label=["train", "test"], density=True)
    left.set(title="Query length", xlabel="words", ylabel="share of queries")
    left.legend(fontsize=7)
    for split, colour in (("train", "tab:blue"), ("test", "tab:red")):
        mine = [p for p in photos if p.split == split]
        right.scatter([p.width for p in mine], [p.height for p in mine], s=4, alpha=0.5,
                      c=colour, label=split)
    right.set(title="Photo sizes", xlabel="width, px", ylabel="height, px")
    right.legend(fontsize=7)
    figures["queries_photos"] = _save(fig, out / "eda_queries_photos.png")

    fig, (left, right) = _figure()
    for source, group in aggregate.groupby("source"):
        left.hist(group["target"], bins=20, alpha=0.6, label=str(source), density=True)
    left.set(title="Aggregate target by source", xlabel="target (0–1)", ylabel="density")
    left.legend(fontsize=7)
    shares = [(str(s), float((g["target"] >= 0.5).mean())) for s, g in
              aggregate.groupby("source")]
    right.bar([s for s, _ in shares], [v for _, v in shares], color="tab:green")
    right.set(title="Class imbalance: share of pairs with target ≥ 0.5", ylabel="share")
    figures["target"] = _save(fig, out / "eda_target.png")
    return figures
