"""Russian translations of captions, kept in the repository as (query_id, Russian text) only.

`training/data/ru/` holds human translations (no English text: that stays in the shared data):
`seed_test.tsv` (the 500 seed test queries) and `flickr8k_test.tsv` (caption #0 of every
Flickr8k TEST photo) are held out for evaluation; `dev_calibration.tsv` (caption #0 of 400 DEV
photos, none of them a seed test photo) is the only Russian text used to fit anything.
"""

from __future__ import annotations

import csv
from pathlib import Path

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "data" / "ru"


def load_translations(name: str, directory: Path = TRANSLATIONS_DIR) -> dict[str, str]:
    """query_id → Russian text for one translation file (`seed_test`, `flickr8k_test`, ...)."""
    path = directory / f"{name}.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["query_id"]: row["ru"] for row in rows}
