"""Loaders for the customer's seed dataset (`../shared/data/seed`), as delivered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class SeedTestQuery:
    query_id: str
    text: str
    image: str


def load_test_queries(seed_root: Path) -> list[SeedTestQuery]:
    """The 500 test queries, each with its one relevant photo, in file order."""
    frame = pd.read_csv(seed_root / "test_queries.csv", sep="|", index_col=0)
    return [SeedTestQuery(str(r.query_id), str(r.query_text), str(r.image))
            for r in frame.itertuples(index=False)]
