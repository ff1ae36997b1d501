"""Legal query filter: refuse searches for children (English and Russian).

See ``filter.py`` for the rules and ``lexicon/en.txt`` for the lexicon format.
"""

from engine.legal.filter import (
    DISCLAIMER_EN,
    DISCLAIMER_RU,
    LEXICON_DIR,
    LegalFilter,
    LexiconError,
    QueryVerdict,
    disclaimer,
)

__all__ = [
    "DISCLAIMER_EN",
    "DISCLAIMER_RU",
    "LEXICON_DIR",
    "LegalFilter",
    "LexiconError",
    "QueryVerdict",
    "disclaimer",
]
