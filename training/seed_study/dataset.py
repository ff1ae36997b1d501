"""The study's table of (query, photo, target) pairs, assembled from the delivered files.

Query texts come from `train_dataset.csv`. Crowd pairs whose query is not in that file have no
text there; their `query_id` (`<image>#<n>`) names a Flickr8k caption, so the text can be
recovered from `Flickr8k.token.txt`. The study could not use those pairs; `recover=True`
adds them, so the report can measure whether they help.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from training.flickr8k import Flickr8k
from training.seed_data import (
    SeedDataError,
    SeedTestQuery,
    load_crowd_annotations,
    load_expert_annotations,
    load_test_images,
    load_test_queries,
    load_train_pairs,
)
from training.seed_study.target import aggregate_target


@dataclass
class SeedTables:
    """Everything the study reads, loaded once."""

    seed_root: Path
    train_pairs: pd.DataFrame
    expert: pd.DataFrame
    crowd: pd.DataFrame
    test_queries: list[SeedTestQuery]
    test_images: list[str]
    captions: dict[str, list[str]]

    @property
    def train_dir(self) -> Path:
        return self.seed_root / "train_images"

    @property
    def test_dir(self) -> Path:
        return self.seed_root / "test_images"

    def known_texts(self) -> dict[str, str]:
        """query_id → text, as `train_dataset.csv` gives it."""
        unique = self.train_pairs.drop_duplicates("query_id")
        return dict(zip(unique["query_id"], unique["query_text"], strict=True))


def load_tables(data_root: Path) -> SeedTables:
    """Read the seed tables and the Flickr8k captions under `data_root` (seed/, flickr8k/)."""
    seed_root = data_root / "seed"
    token_file = data_root / "flickr8k" / "Flickr8k.token.txt"
    if not token_file.is_file():
        raise SeedDataError(f"missing {token_file}: --data must hold flickr8k/ beside seed/ "
                            "(its captions flag photos and recover missing query texts)")
    tables = SeedTables(
        seed_root=seed_root, train_pairs=load_train_pairs(seed_root),
        expert=load_expert_annotations(seed_root), crowd=load_crowd_annotations(seed_root),
        test_queries=load_test_queries(seed_root), test_images=load_test_images(seed_root),
        captions=Flickr8k(data_root / "flickr8k").captions())
    for folder in (tables.train_dir, tables.test_dir):
        if not folder.is_dir():
            raise SeedDataError(f"missing photo folder {folder}")
    return tables


def caption_text(query_id: str, captions: Mapping[str, list[str]]) -> str | None:
    """The Flickr8k caption a `<image>#<n>` query id names, or None when there is none."""
    image, _, number = query_id.partition("#")
    texts = captions.get(image)
    if texts is None or not number.isdigit() or int(number) >= len(texts):
        return None
    return texts[int(number)]


def recovered_texts(query_ids: set[str], known: Mapping[str, str],
                    captions: Mapping[str, list[str]]) -> dict[str, str]:
    """Texts for the query ids `known` lacks, from the captions (ids without one are left out)."""
    out: dict[str, str] = {}
    for query_id in sorted(query_ids - set(known)):
        text = caption_text(query_id, captions)
        if text is not None:
            out[query_id] = text
    return out


def build_pairs(tables: SeedTables, use_crowd: bool = True, recover: bool = False
                ) -> pd.DataFrame:
    """Aggregated pairs with their query text and where that text came from.

    Columns: image, query_id, target, source (expert|crowd), expert_target, share_of_yes,
    query_text, text_origin (train_dataset|flickr8k). Pairs without a text are dropped.
    """
    pairs = aggregate_target(tables.expert, tables.crowd, use_crowd=use_crowd)
    known = tables.known_texts()
    texts = dict(known)
    if recover:
        texts.update(recovered_texts(set(pairs["query_id"]), known, tables.captions))
    pairs["query_text"] = pairs["query_id"].map(texts)
    pairs["text_origin"] = pairs["query_id"].map(
        lambda q: "train_dataset" if q in known else "flickr8k")
    return pairs.dropna(subset=["query_text"]).reset_index(drop=True)
