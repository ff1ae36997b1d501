"""Legal exclusion of training data with the engine's own filter (the one users meet).

Two rules, as the customer's study applied them:
- a pair is dropped when its query is restricted (`LegalFilter.check_query` refuses it);
- a photo is dropped with all its pairs when its own captions (Flickr8k, by the photo's file
  name) describe children (`LegalFilter.mentions_children`).

The number of flagged photos depends on how many of a photo's five captions must mention a
child; the study reported 303 removed photos without saying how. `caption_threshold_table`
counts every threshold so the report can say which rule comes closest and why ours differs.
The rules take plain callables so they are unit-tested without loading the lexicons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

Check = Callable[[str], bool]


def restricted_queries(texts: Mapping[str, str], is_restricted: Check) -> set[str]:
    """query_ids whose text the filter refuses."""
    return {query_id for query_id, text in texts.items() if is_restricted(text)}


def child_caption_counts(captions: Mapping[str, Iterable[str]], images: Iterable[str],
                         mentions_children: Check) -> dict[str, int]:
    """For each photo, how many of its captions mention children (0 without captions)."""
    return {image: sum(1 for c in captions.get(image, ()) if mentions_children(c))
            for image in images}


def flagged_photos(counts: Mapping[str, int], min_captions: int = 1) -> set[str]:
    """Photos with at least `min_captions` child-describing captions (ours: 1, i.e. any)."""
    return {image for image, n in counts.items() if n >= min_captions}


def caption_threshold_table(counts: Mapping[str, int], max_captions: int = 5
                            ) -> list[dict[str, int]]:
    """Photos flagged under each rule "≥ k captions describe children", k = 1..max."""
    return [{"min_captions": k, "photos": sum(1 for n in counts.values() if n >= k)}
            for k in range(1, max_captions + 1)]


@dataclass(frozen=True)
class Exclusion:
    """The pairs that survive and what was removed (counts for the report and metrics.json)."""

    kept: pd.DataFrame
    summary: dict[str, int]


def apply_exclusion(pairs: pd.DataFrame, restricted: set[str], flagged: set[str]) -> Exclusion:
    """Drop pairs with a restricted query or a flagged photo; count each reason and both."""
    by_query = pairs["query_id"].isin(restricted)
    by_photo = pairs["image"].isin(flagged)
    dropped = by_query | by_photo
    kept = pairs.loc[~dropped].reset_index(drop=True)
    summary = {
        "pairs_before": len(pairs),
        "pairs_restricted_query": int(by_query.sum()),
        "pairs_flagged_photo": int(by_photo.sum()),
        "pairs_both_reasons": int((by_query & by_photo).sum()),
        "pairs_dropped": int(dropped.sum()),
        "pairs_kept": len(kept),
        "queries_before": int(pairs["query_id"].nunique()),
        "queries_restricted": int(pairs.loc[by_query, "query_id"].nunique()),
        "queries_kept": int(kept["query_id"].nunique()),
        "photos_before": int(pairs["image"].nunique()),
        "photos_flagged": int(pairs.loc[by_photo, "image"].nunique()),
        "photos_kept": int(kept["image"].nunique()),
    }
    if "source" in pairs.columns:
        for source in sorted(pairs["source"].unique()):
            mine = pairs["source"] == source
            summary[f"{source}_pairs_before"] = int(mine.sum())
            summary[f"{source}_pairs_kept"] = int((mine & ~dropped).sum())
    return Exclusion(kept=kept, summary=summary)
