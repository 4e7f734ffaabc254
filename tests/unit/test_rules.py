"""Business rules: examples of each rule, and properties of the composed pipeline."""

from __future__ import annotations

import copy
import doctest
from collections import Counter
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import recomatrix.rules.compose
import recomatrix.rules.filters
import recomatrix.rules.ordering
from recomatrix.rules import (
    apply_rules,
    backfill,
    cap_per_creator,
    dedupe,
    drop_watched,
    limit_adjacent_genre,
    place_sponsored,
)
from recomatrix.types import Candidate, RuleContext

NOW = 1_000_000.0
HOUR = 3600.0
GENRES = ("thriller", "drama", "comedy", "")
CREATORS = ("c1", "c2", "c3", "")
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


BASE_CONTEXT = RuleContext(user_id="u1", now=NOW, n=20, watched={}, exclude=frozenset())


def context(**overrides: Any) -> RuleContext:
    return replace(BASE_CONTEXT, **overrides)


def cand(
    item_id: str,
    genre: str = "",
    *,
    source: str = "personal",
    score: float = 0.0,
    creator_id: str = "",
    sponsored: bool = False,
) -> Candidate:
    return Candidate(
        item_id, source, score=score, genre=genre, creator_id=creator_id, sponsored=sponsored
    )


def ids(cands: list[Candidate]) -> list[str]:
    return [c.item_id for c in cands]


# Invariant checks, written independently of the rules' own helpers.


def longest_genre_run(cands: list[Candidate]) -> int:
    longest, length, previous = 0, 0, ""
    for c in cands:
        length = length + 1 if c.genre and c.genre == previous else (1 if c.genre else 0)
        previous = c.genre
        longest = max(longest, length)
    return longest


def assert_invariants(ctx: RuleContext, out: list[Candidate]) -> None:
    assert len(out) <= max(ctx.n, 0)
    assert len(set(ids(out))) == len(out), "an item twice"
    for c in out:
        assert c.item_id not in ctx.exclude
        assert not (c.item_id in ctx.watched and NOW - ctx.watched[c.item_id] < 48 * HOUR)
    assert longest_genre_run(out) <= ctx.max_adjacent_same_genre
    per_creator = Counter(c.creator_id for c in out if c.creator_id)
    assert all(count <= ctx.max_per_creator for count in per_creator.values())
    sponsored_at = [i for i, c in enumerate(out) if c.sponsored]
    assert set(sponsored_at) <= set(ctx.sponsored_positions)
    # The best sponsored item takes the first slot unless its genre would make the run
    # there too long; then the best one that fits does.
    for a, i in enumerate(sponsored_at):
        for j in sponsored_at[a + 1 :]:
            if out[j].score > out[i].score:
                before = out[max(0, i - ctx.max_adjacent_same_genre) : i]
                assert out[j].genre and len(before) == ctx.max_adjacent_same_genre, "slot order"
                assert all(c.genre == out[j].genre for c in before), "best sponsored skipped"


@dataclass(frozen=True)
class Scenario:
    ctx: RuleContext
    ranked: list[Candidate]


ITEM_POOL = [f"i{k}" for k in range(15)] + [f"p{k}" for k in range(15)]


def candidate_lists(
    *, prefixes: str, source: str, max_size: int
) -> st.SearchStrategy[list[Candidate]]:
    """Scored candidates over a small id pool (so duplicates happen), sorted by score."""
    one = st.builds(
        Candidate,
        item_id=st.sampled_from([i for i in ITEM_POOL if i[0] in prefixes]),
        source=st.just(source),
        score=st.floats(0, 1),
        genre=st.sampled_from(GENRES),
        creator_id=st.sampled_from(CREATORS),
        sponsored=st.booleans() if source == "personal" else st.just(False),
    )
    return st.lists(one, max_size=max_size).map(
        lambda made: sorted(made, key=lambda c: c.score, reverse=True)
    )


# Built once: hypothesis validates a strategy on first use, which costs more than a draw.
RANKED_LISTS = candidate_lists(prefixes="i", source="personal", max_size=30)
# Popular lists overlap the ranked ids, as real backfill does.
POPULAR_LISTS = candidate_lists(prefixes="ip", source="popular", max_size=15)
HOURS_AGO = st.floats(-1, 96) | st.sampled_from([47.0, 47.99, 48.0, 48.01, 49.0])
WATCHED_MAPS = st.dictionaries(st.sampled_from(ITEM_POOL), HOURS_AGO.map(lambda h: NOW - h * HOUR))
EXCLUDE_SETS = st.frozensets(st.sampled_from(ITEM_POOL), max_size=5)
SLOT_SETS = st.sets(st.integers(0, 12), max_size=3).map(lambda slots: tuple(sorted(slots)))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ctx = context(
        n=draw(st.integers(0, 25)),
        watched=draw(WATCHED_MAPS),
        exclude=draw(EXCLUDE_SETS),
        backfill=tuple(draw(POPULAR_LISTS)),
        max_adjacent_same_genre=draw(st.integers(1, 3)),
        max_per_creator=draw(st.integers(1, 4)),
        sponsored_positions=draw(SLOT_SETS),
    )
    return Scenario(ctx, draw(RANKED_LISTS))


def diverse_backfill(count: int) -> tuple[Candidate, ...]:
    """Fillers that always fit: each of its own genre and creator, never seen before."""
    return tuple(
        cand(f"d{k}", f"genre{k}", source="popular", creator_id=f"creator{k}") for k in range(count)
    )


# Properties of the composed pipeline.


@PROPERTY_SETTINGS
@given(scenarios())
def test_pipeline_output_holds_every_invariant(scenario: Scenario) -> None:
    out = apply_rules(scenario.ctx, scenario.ranked)
    assert_invariants(scenario.ctx, out)
    inputs = scenario.ranked + list(scenario.ctx.backfill)
    assert all(any(c is x for x in inputs) for c in out), "an item made up or copied"


@PROPERTY_SETTINGS
@given(scenarios())
def test_pipeline_fills_to_n_when_backfill_is_diverse_enough(scenario: Scenario) -> None:
    fillers = (*scenario.ctx.backfill, *diverse_backfill(scenario.ctx.n))
    ctx = replace(scenario.ctx, backfill=fillers)
    out = apply_rules(ctx, scenario.ranked)
    assert len(out) == ctx.n
    assert_invariants(ctx, out)


@PROPERTY_SETTINGS
@given(scenarios())
def test_pipeline_never_mutates_its_inputs(scenario: Scenario) -> None:
    ranked_before = copy.deepcopy(scenario.ranked)
    backfill_before = copy.deepcopy(scenario.ctx.backfill)
    ranked = list(scenario.ranked)
    apply_rules(scenario.ctx, ranked)
    assert ranked == ranked_before
    assert scenario.ctx.backfill == backfill_before


@PROPERTY_SETTINGS
@given(scenarios())
def test_without_genres_or_sponsors_length_is_what_the_filters_leave(scenario: Scenario) -> None:
    ranked = [replace(c, genre="", sponsored=False) for c in scenario.ranked]
    ctx = replace(scenario.ctx, backfill=())
    seen: set[str] = set()
    per_creator: Counter[str] = Counter()
    survivors = 0
    for c in ranked:  # brute-force reference of drop_watched, dedupe and cap_per_creator
        if c.item_id in seen:
            continue
        seen.add(c.item_id)
        hidden = c.item_id in ctx.exclude or (
            c.item_id in ctx.watched and NOW - ctx.watched[c.item_id] < 48 * HOUR
        )
        capped = bool(c.creator_id) and per_creator[c.creator_id] >= ctx.max_per_creator
        if hidden or capped:
            continue
        per_creator[c.creator_id] += 1
        survivors += 1
    assert len(apply_rules(ctx, ranked)) == min(ctx.n, survivors)


@PROPERTY_SETTINGS
@given(
    st.lists(st.sampled_from(GENRES), max_size=30),
    st.integers(1, 3),
    st.integers(0, 30),
)
def test_an_already_valid_list_comes_back_in_the_same_order(
    genres: list[str], max_adjacent: int, n: int
) -> None:
    ranked = [cand(f"i{k}", g, score=1.0 - k / 100) for k, g in enumerate(genres)]
    assume(longest_genre_run(ranked) <= max_adjacent)
    ctx = context(n=n, max_adjacent_same_genre=max_adjacent)
    assert ids(apply_rules(ctx, ranked)) == ids(ranked)[:n]


@PROPERTY_SETTINGS
@given(scenarios())
def test_organic_order_is_kept_when_no_genre_forces_a_move(scenario: Scenario) -> None:
    ranked = [replace(c, genre="") for c in scenario.ranked]
    ctx = replace(scenario.ctx, backfill=())
    filtered = cap_per_creator(ctx, dedupe(ctx, drop_watched(ctx, ranked)))
    organic_in = ids([c for c in filtered if not c.sponsored])
    organic_out = ids([c for c in apply_rules(ctx, ranked) if not c.sponsored])
    # Sponsored items only take slots; the organic ones keep their order, none skipped.
    assert organic_out == organic_in[: len(organic_out)]


# Examples of each rule.


def test_item_watched_47h_ago_is_dropped_and_one_watched_49h_ago_is_kept() -> None:
    ctx = context(watched={"recent": NOW - 47 * HOUR, "older": NOW - 49 * HOUR})
    assert ids(drop_watched(ctx, [cand("recent"), cand("older"), cand("never")])) == [
        "older",
        "never",
    ]


def test_item_watched_exactly_48h_ago_may_be_shown_again() -> None:
    ctx = context(watched={"a": NOW - 48 * HOUR})
    assert ids(drop_watched(ctx, [cand("a")])) == ["a"]


def test_excluded_item_is_never_recommended_even_from_backfill() -> None:
    ctx = context(n=3, exclude=frozenset({"x"}), backfill=(cand("x", source="popular"),))
    assert ids(apply_rules(ctx, [cand("x"), cand("a")])) == ["a"]


def test_dedupe_keeps_the_first_occurrence() -> None:
    out = dedupe(context(), [cand("a", source="personal"), cand("b"), cand("a", source="fresh")])
    assert [(c.item_id, c.source) for c in out] == [("a", "personal"), ("b", "personal")]


def test_creator_cap_keeps_the_best_ranked_and_ignores_unknown_creators() -> None:
    cands = [cand(f"x{k}", creator_id="c1") for k in range(5)] + [cand("y"), cand("z")]
    assert ids(cap_per_creator(context(max_per_creator=3), cands)) == ["x0", "x1", "x2", "y", "z"]


def test_third_adjacent_thriller_is_moved_after_the_drama() -> None:
    cands = [cand(str(k), g) for k, g in enumerate(["thriller"] * 3 + ["drama"])]
    out = limit_adjacent_genre(context(), cands)
    assert [c.genre for c in out] == ["thriller", "thriller", "drama", "thriller"]
    assert ids(out) == ["0", "1", "3", "2"]


def test_a_single_genre_list_is_cut_at_the_run_limit() -> None:
    cands = [cand(str(k), "thriller") for k in range(5)]
    assert ids(limit_adjacent_genre(context(), cands)) == ["0", "1"]


def test_unknown_genre_never_forms_a_run_and_breaks_one() -> None:
    genres = ["", "", "", "thriller", "thriller", "", "thriller", "thriller"]
    cands = [cand(str(k), g) for k, g in enumerate(genres)]
    assert ids(limit_adjacent_genre(context(), cands)) == [str(k) for k in range(len(genres))]


def test_sponsored_items_fill_slots_in_score_order_and_extras_are_dropped() -> None:
    organic = [cand(f"o{k}", score=1.0 - k / 10) for k in range(5)]
    sponsored = [cand(f"s{k}", score=0.5 - k / 10, sponsored=True) for k in range(3)]
    ctx = context(sponsored_positions=(1, 3))
    out = place_sponsored(ctx, sponsored[::-1] + organic)
    assert ids(out) == ["o0", "s0", "o1", "s1", "o2", "o3", "o4"]


@pytest.mark.parametrize(
    ("organic_count", "expected"),
    [(1, ["o0"]), (2, ["o0", "o1", "s0"]), (3, ["o0", "o1", "s0", "o2"])],
)
def test_a_slot_is_used_only_when_the_list_reaches_it(
    organic_count: int, expected: list[str]
) -> None:
    cands = [cand("s0", sponsored=True)] + [cand(f"o{k}") for k in range(organic_count)]
    assert ids(place_sponsored(context(sponsored_positions=(2, 9)), cands)) == expected


def test_sponsored_item_that_would_extend_a_run_moves_to_a_later_slot() -> None:
    ranked = [cand("s", "thriller", score=0.9, sponsored=True)] + [
        cand(f"o{k}", g) for k, g in enumerate(["thriller", "thriller", "drama", "comedy"])
    ]
    ctx = context(n=5, sponsored_positions=(2, 3))
    assert ids(apply_rules(ctx, ranked)) == ["o0", "o1", "o2", "s", "o3"]


def test_backfill_skips_what_must_not_be_shown_and_keeps_its_source() -> None:
    fillers = (
        cand("a", source="popular"),  # already listed
        cand("watched", source="popular"),
        cand("ad", source="popular", sponsored=True),
        cand("busy", source="popular", creator_id="c1"),  # c1 already at its cap of 1
        cand("ok", source="popular"),
    )
    ctx = context(n=5, watched={"watched": NOW - HOUR}, max_per_creator=1, backfill=fillers)
    out = backfill(ctx, [cand("a", creator_id="c1")])
    assert [(c.item_id, c.source) for c in out] == [("a", "personal"), ("ok", "popular")]


def test_backfill_defers_a_filler_that_would_extend_a_run() -> None:
    fillers = (cand("t3", "thriller", source="popular"), cand("d1", "drama", source="popular"))
    ctx = context(n=4, backfill=fillers)
    out = backfill(ctx, [cand("t1", "thriller"), cand("t2", "thriller")])
    assert ids(out) == ["t1", "t2", "d1", "t3"]


def test_backfill_truncates_a_long_list_to_n() -> None:
    assert ids(backfill(context(n=2), [cand("a"), cand("b"), cand("c")])) == ["a", "b"]


@pytest.mark.parametrize(
    "module",
    [recomatrix.rules.filters, recomatrix.rules.ordering, recomatrix.rules.compose],
)
def test_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# The fast forms of the ordering rules give the greedy assembly's answer.


@PROPERTY_SETTINGS
@given(scenarios())
def test_sponsored_placement_and_genre_repair_match_the_greedy_assembly(
    scenario: Scenario,
) -> None:
    from recomatrix.rules.ordering import _assemble

    ctx, ranked = scenario.ctx, scenario.ranked
    sponsored = sorted((c for c in ranked if c.sponsored), key=lambda c: c.score, reverse=True)
    organic = [c for c in ranked if not c.sponsored]
    everything = len(ranked) + 1
    greedy = _assemble(organic, sponsored, slots=ctx.sponsored_positions, limit=None,
                       stop_at=everything)  # fmt: skip
    assert ids(place_sponsored(ctx, ranked)) == ids(greedy)
    placed = place_sponsored(ctx, ranked)
    full = _assemble((c for c in placed if not c.sponsored), (c for c in placed if c.sponsored),
                     slots=ctx.sponsored_positions, limit=ctx.max_adjacent_same_genre,
                     stop_at=everything)  # fmt: skip
    assert ids(limit_adjacent_genre(ctx, placed)) == ids(full)[: max(ctx.n, 0)]
