"""Business rules over the ranked list: plain functions `(RuleContext, list) -> list`,
composed in order by `apply_rules`.
"""

from recomatrix.rules.compose import DEFAULT_RULES, apply_rules, backfill
from recomatrix.rules.filters import (
    cap_per_creator,
    dedupe,
    drop_watched,
    watched_within,
    withheld,
)
from recomatrix.rules.fresh import is_fresh, promote_fresh
from recomatrix.rules.ordering import limit_adjacent_genre, place_sponsored

__all__ = [
    "DEFAULT_RULES",
    "apply_rules",
    "backfill",
    "cap_per_creator",
    "dedupe",
    "drop_watched",
    "is_fresh",
    "limit_adjacent_genre",
    "place_sponsored",
    "promote_fresh",
    "watched_within",
    "withheld",
]
