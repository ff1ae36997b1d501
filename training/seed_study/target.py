"""The seed study's target: how well a query matches a photo, on a 0–1 scale.

The study's aggregate, reproduced exactly: where experts scored a pair, the mean of their 1–4
scores mapped linearly onto 0–1, `(mean - 1) / 3` (1 = no match → 0, 4 = exact match → 1);
where only the crowd voted, the share of "yes" votes. A pair with both keeps the expert value:
experts saw a 4-level scale and are fewer but trained, the crowd answered yes/no.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXPERT_SCORE_COLUMNS = ("expert_1", "expert_2", "expert_3")
KEY = ["image", "query_id"]


def normalised_expert_mean(scores: np.ndarray) -> np.ndarray:
    """Row-wise mean of 1–4 scores (missing ones ignored) mapped to 0–1; NaN if none.

    Raises ValueError on a score outside 1–4: a corrupted table must not pass silently.
    """
    scores = np.asarray(scores, dtype=np.float64)
    present = scores[~np.isnan(scores)]
    if present.size and (present.min() < 1 or present.max() > 4):
        raise ValueError("expert scores must lie in 1..4")
    counts = (~np.isnan(scores)).sum(axis=1)
    sums = np.nansum(scores, axis=1)
    means = np.divide(sums, counts, out=np.full(len(scores), np.nan), where=counts > 0)
    result: np.ndarray = (means - 1.0) / 3.0
    return result


def aggregate_target(expert: pd.DataFrame, crowd: pd.DataFrame,
                     use_crowd: bool = True) -> pd.DataFrame:
    """One row per (image, query_id): `target`, its `source` and the raw labels beside it.

    `expert` has `image, query_id, expert_1..3`; `crowd` has `image, query_id, share_of_yes`.
    With `use_crowd=False` only expert-scored pairs are kept (to measure what the crowd adds).
    """
    experts = expert[KEY].copy()
    experts["expert_target"] = normalised_expert_mean(
        expert[list(EXPERT_SCORE_COLUMNS)].to_numpy(dtype=np.float64))
    experts = experts.dropna(subset=["expert_target"]).drop_duplicates(KEY)
    crowd_part = crowd[[*KEY, "share_of_yes"]].dropna().drop_duplicates(KEY)
    merged = experts.merge(crowd_part, on=KEY, how="outer" if use_crowd else "left")
    has_expert = merged["expert_target"].notna()
    merged["target"] = np.where(has_expert, merged["expert_target"], merged["share_of_yes"])
    merged["source"] = np.where(has_expert, "expert", "crowd")
    merged = merged.dropna(subset=["target"])
    return merged.sort_values(KEY, kind="stable").reset_index(drop=True)
