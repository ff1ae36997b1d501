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


# The delivered tables have no header (TSV) or a fixed one (CSV); these are their columns.
EXPERT_COLUMNS = ["image", "query_id", "expert_1", "expert_2", "expert_3"]
CROWD_COLUMNS = ["image", "query_id", "share_of_yes", "n_yes", "n_no"]


class SeedDataError(FileNotFoundError):
    """A seed table is missing or not in the delivered layout (the user passed a wrong path)."""


def _require(path: Path) -> Path:
    if not path.is_file():
        raise SeedDataError(f"missing {path}: --data must hold seed/ (and flickr8k/) as "
                            "described in the data README")
    return path


def load_train_pairs(seed_root: Path) -> pd.DataFrame:
    """`train_dataset.csv`: image, query_id, query_text (one row per annotated pair)."""
    frame = pd.read_csv(_require(seed_root / "train_dataset.csv"), dtype=str)
    missing = {"image", "query_id", "query_text"} - set(frame.columns)
    if missing:
        raise SeedDataError(f"train_dataset.csv lacks columns {sorted(missing)}")
    return frame[["image", "query_id", "query_text"]]


def load_expert_annotations(seed_root: Path) -> pd.DataFrame:
    """`ExpertAnnotations.tsv`: three 1–4 scores per pair (NaN where a score is missing)."""
    frame = pd.read_csv(_require(seed_root / "ExpertAnnotations.tsv"), sep="\t", header=None,
                        names=EXPERT_COLUMNS, dtype={"image": str, "query_id": str})
    for column in EXPERT_COLUMNS[2:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_crowd_annotations(seed_root: Path) -> pd.DataFrame:
    """`CrowdAnnotations.tsv`: share of "yes" votes and the vote counts per pair."""
    frame = pd.read_csv(_require(seed_root / "CrowdAnnotations.tsv"), sep="\t", header=None,
                        names=CROWD_COLUMNS, dtype={"image": str, "query_id": str})
    frame["share_of_yes"] = pd.to_numeric(frame["share_of_yes"], errors="coerce")
    for column in ("n_yes", "n_no"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype(int)
    return frame


def load_test_images(seed_root: Path) -> list[str]:
    """`test_images.csv`: the test photos' file names, in file order."""
    frame = pd.read_csv(_require(seed_root / "test_images.csv"), dtype=str)
    return [str(name) for name in frame["image"]]


def query_source_image(query_id: str) -> str:
    """The photo a query was written for: `query_id` is `<image>#<n>`."""
    return query_id.split("#", 1)[0]
