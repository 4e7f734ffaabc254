"""The synthetic catalogue: genres, creators and items whose text carries their genre.

Titles, descriptions and tags are drawn from genre-specific word banks, so a sentence
encoder reading `Item.text()` can tell a thriller from a cooking show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recomatrix.types import Item

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Genre -> (relative share of the catalogue and of user interest, words typical of it).
GENRE_BANKS: dict[str, tuple[float, str]] = {
    "drama": (
        1.6,
        "family secret grief inheritance betrayal reunion marriage confession"
        " farewell sister father hospital promise scandal",
    ),
    "comedy": (
        1.5,
        "roommate prank blunder neighbour mixup awkward party sitcom jokes"
        " slacker impostor hangover bachelor karaoke",
    ),
    "thriller": (
        1.2,
        "detective murder chase conspiracy suspect alibi hostage witness"
        " informant cipher fugitive agent trap surveillance",
    ),
    "documentary": (
        0.8,
        "investigation archive interview footage truth expedition"
        " whistleblower portrait evidence chronicle report survivors inquiry"
        " testimony",
    ),
    "animation": (
        0.9,
        "cartoon puppet robot critters pixel toys sidekick bunny kingdom"
        " paintbrush balloon penguin squirrel doodle",
    ),
    "sci-fi": (
        0.9,
        "spaceship android galaxy alien starship cyborg wormhole colony mars"
        " quantum clone orbit asteroid timeline",
    ),
    "horror": (
        0.7,
        "haunted ghost zombie curse demon cellar possession ritual slasher"
        " creature nightmare crypt vampire scream",
    ),
    "romance": (
        0.9,
        "lovers kiss heartbreak soulmate proposal valentine crush courtship"
        " affair honeymoon flirt serenade embrace desire",
    ),
    "action": (
        1.2,
        "explosion mercenary commando rescue firefight showdown convoy sniper"
        " helicopter stunt vendetta bomb squad rampage",
    ),
    "fantasy": (
        0.7,
        "wizard sorcerer quest elves prophecy dragon enchanted castle sword"
        " realm goblin oracle spellbook throne",
    ),
    "crime": (
        0.9,
        "gangster mafia cartel robbery smuggler precinct mobster bribe racket"
        " syndicate kingpin parole undercover counterfeit",
    ),
    "music": (
        0.6,
        "concert band guitar album tour singer drummer festival rehearsal"
        " melody backstage orchestra rapper vinyl",
    ),
    "sports": (
        0.7,
        "football championship coach stadium marathon boxing season rookie"
        " playoff tennis goal trophy league underdog",
    ),
    "cooking": (
        0.5,
        "recipe kitchen chef baking pasta spices bistro dessert grill pastry"
        " tasting menu barbecue sourdough",
    ),
    "travel": (
        0.5,
        "journey backpacking island passport voyage beaches mountains train"
        " hostel safari cruise village market lagoon",
    ),
    "history": (
        0.5,
        "empire emperor revolution medieval dynasty pharaoh crusade victorian"
        " pioneers ancient monarchy treaty centuries legion",
    ),
    "nature": (
        0.6,
        "wildlife ocean forest rainforest whales predators migration coral"
        " glacier savanna birds insects volcano wilderness",
    ),
    "kids": (
        0.8,
        "playground school puppy friendship alphabet classroom lullaby treehouse"
        " bedtime crayons teddy picnic homework recess",
    ),
}
GENRES: list[str] = list(GENRE_BANKS)
GENRE_WORDS: dict[str, list[str]] = {g: words.split() for g, (_, words) in GENRE_BANKS.items()}
GENRE_PRIOR: FloatArray = np.array([share for share, _ in GENRE_BANKS.values()])
GENRE_PRIOR /= GENRE_PRIOR.sum()

# Genre-neutral words: they make titles read naturally without carrying any signal.
_TITLE_ADJECTIVES = (
    "Last Silent Golden Hidden Broken Little Wild Lost Final Secret Endless Burning Quiet"
    " Crimson Distant Midnight Northern Second"
).split()
_TONES = "gripping gentle bold heartfelt sharp stylish intimate sweeping playful raw".split()

SECONDARY_GENRE_SHARE = 0.35  # items that also carry a second genre
OFF_HOME_GENRE_SHARE = 0.15  # items a creator makes outside their home genre
SPONSORED_SHARE = 0.01
POPULARITY_EXPONENT = 1.05  # Zipf exponent of item popularity within a genre


@dataclass(frozen=True, slots=True)
class ItemTraits:
    """Hidden generative properties of items, aligned with the item list."""

    genre: IntArray  # primary genre index
    genre2: IntArray  # secondary genre index, -1 for none
    popularity: FloatArray  # Zipf weight within the primary genre
    appeal: FloatArray  # multiplies the click probability
    duration_s: FloatArray  # full length; a completed view watches all of it


def draw_items(
    rng: np.random.Generator,
    *,
    creator_home: IntArray,
    created_at: FloatArray,
    first_index: int = 0,
) -> tuple[list[Item], ItemTraits]:
    """Draw `len(created_at)` items made by the given creators, with text from genre banks."""
    n = len(created_at)
    g = len(GENRES)
    # Some creators are far more prolific than others.
    creator_weight = 1.0 / (np.arange(1, len(creator_home) + 1) ** 0.8)
    creator = rng.choice(len(creator_home), size=n, p=creator_weight / creator_weight.sum())
    genre = creator_home[creator].astype(np.int64)
    off_home = rng.random(n) < OFF_HOME_GENRE_SHARE
    genre[off_home] = rng.choice(g, size=int(off_home.sum()), p=GENRE_PRIOR)
    genre2 = rng.choice(g, size=n, p=GENRE_PRIOR).astype(np.int64)
    genre2[(rng.random(n) >= SECONDARY_GENRE_SHARE) | (genre2 == genre)] = -1

    # Zipf popularity: a random rank within the genre, weight 1 / rank^s.
    order = np.lexsort((rng.random(n), genre))
    block_start = np.searchsorted(genre[order], genre[order], side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - block_start
    popularity = (1.0 / (rank + 1.0) ** POPULARITY_EXPONENT).astype(np.float64)

    traits = ItemTraits(
        genre=genre,
        genre2=genre2,
        popularity=popularity,
        appeal=rng.lognormal(0.0, 0.25, n),
        duration_s=np.clip(rng.lognormal(np.log(600.0), 0.9, n), 30.0, 7200.0).round(),
    )
    items = _describe(
        rng,
        item_ids=[f"item-{first_index + i}" for i in range(n)],
        genre=genre,
        genre2=genre2,
        creator_ids=[f"creator-{c}" for c in creator.tolist()],
        created_at=created_at,
    )
    return items, traits


def _describe(
    rng: np.random.Generator,
    *,
    item_ids: list[str],
    genre: IntArray,
    genre2: IntArray,
    creator_ids: list[str],
    created_at: FloatArray,
) -> list[Item]:
    """Title, description and tags from the genre's word bank (vectorised word picks)."""
    n = len(item_ids)
    bank_size = np.array([len(GENRE_WORDS[name]) for name in GENRES])[genre]
    # Topics are offset, offset + step and offset + 2 step: three distinct words of the bank.
    offset, step = rng.integers(0, bank_size), rng.integers(1, 4, n)
    topics = (offset[:, None] + step[:, None] * np.arange(3)) % bank_size[:, None]
    title_noun = rng.integers(0, bank_size)
    adjective = rng.integers(0, len(_TITLE_ADJECTIVES), n)
    tone = rng.integers(0, len(_TONES), n)
    n_tags = rng.integers(2, 5, n)
    sponsored = rng.random(n) < SPONSORED_SHARE
    banks = [GENRE_WORDS[name] for name in GENRES]
    columns = zip(
        genre.tolist(),
        genre2.tolist(),
        topics.tolist(),
        title_noun.tolist(),
        adjective.tolist(),
        tone.tolist(),
        n_tags.tolist(),
        strict=True,
    )
    items = []
    for i, (g, g2, (a, b, c), noun, adj, tone_i, tag_count) in enumerate(columns):
        words = banks[g]
        # Tags come from the primary genre, the last one from the secondary genre if any.
        own_tags = tag_count - 1 if g2 >= 0 else tag_count
        tags = [words[(a + 3 * k + 1) % len(words)] for k in range(own_tags)]
        if g2 >= 0:
            tags.append(banks[g2][a % len(banks[g2])])
        items.append(
            Item(
                item_id=item_ids[i],
                title=f"{_TITLE_ADJECTIVES[adj]} {words[noun].title()}",
                description=f"A {_TONES[tone_i]} {GENRES[g]} about {words[a]}, {words[b]}"
                f" and {words[c]}.",
                tags=tuple(tags),
                genres=(GENRES[g],) if g2 < 0 else (GENRES[g], GENRES[g2]),
                creator_id=creator_ids[i],
                created_at=float(created_at[i]),
                sponsored=bool(sponsored[i]),
            )
        )
    return items
