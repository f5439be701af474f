import dataclasses
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels_sync.allocation import (
    ALL,
    DEMAND_WEIGHTED,
    EQUAL_SPLIT,
    FIXED,
    GROUP_STRATEGIES,
    INDEPENDENT_STRATEGIES,
    PERCENTAGE,
    PRIORITY,
    STRATEGIES,
    Claim,
    RuleSpec,
    allocate,
    allocate_one,
    pool_after_buffer,
)
from channels_sync.models import AllocationRule

D = Decimal


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------


def amounts(low, high, places=3):
    """Draw Decimals in [low, high]: whole units half the time, else up to `places` decimals."""
    scale = 10**places
    whole = st.integers(math.ceil(low), math.floor(high)).map(Decimal)
    # Scaled integers draw far faster than st.decimals and hit the same values.
    fractional = st.integers(math.ceil(low * scale), math.floor(high * scale)).map(
        lambda n: Decimal(n).scaleb(-places)
    )
    return whole | fractional


POOLS = amounts(-20, 1000)
BUFFER_UNITS = st.just(D(0)) | amounts(0, 50)
BUFFER_PERCENT = st.just(D(0)) | amounts(0, 100, places=2)
SALES = st.just(D(0)) | amounts(0, 500)


# Out-of-range percents and negative quantities are drawn on purpose: they must clamp.
PARAMETERS = {
    PERCENTAGE: st.none() | amounts(-10, 150, places=2),
    FIXED: st.none() | amounts(-5, 1000),
    PRIORITY: st.none() | amounts(0, 500),
}
MAX_SHOWN = st.none() | st.integers(0, 500)
ZERO_BELOW = st.none() | st.integers(0, 50)
SCOPES = st.sampled_from(["channel", "product", "listing", "default"])
# How far a channel's own pool falls below the shared pool (its warehouses are a subset).
SHORTFALLS = st.just(D(0)) | amounts(0, 1020)
SMALL_IDS = st.integers(0, 6)
CLAIM_COUNTS = st.integers(1, 6)


@st.composite
def rule_specs(draw, strategies=STRATEGIES, display_caps=True):
    strategy = draw(st.sampled_from(sorted(strategies)))
    parameter = draw(PARAMETERS[strategy]) if strategy in PARAMETERS else None
    return RuleSpec(
        strategy=strategy,
        parameter=parameter,
        buffer_units=draw(BUFFER_UNITS),
        buffer_percent=draw(BUFFER_PERCENT),
        max_shown=draw(MAX_SHOWN) if display_caps else None,
        zero_below=draw(ZERO_BELOW) if display_caps else None,
        scope=draw(SCOPES),
    )


@st.composite
def claim_sets(draw, strategies=STRATEGIES, display_caps=True, ample_pools=False):
    """Draw (shared_pool, claims) where each claim's own pool is at most the shared pool.

    With ample_pools every channel sees the whole shared pool, so its own-pool cap never
    binds below the group pool.
    """
    shared = draw(POOLS)
    claims = []
    for index in range(draw(CLAIM_COUNTS)):
        pool = shared if ample_pools else shared - draw(SHORTFALLS)
        claims.append(
            Claim(
                listing_id=index + 1,
                channel_id=draw(SMALL_IDS),
                priority=draw(SMALL_IDS),
                pool=pool,
                rule=draw(rule_specs(strategies, display_caps)),
                sales=draw(SALES),
            )
        )
    return shared, claims


def reference_after_buffer(pool: Decimal, rule: RuleSpec) -> int:
    """Compute the buffer formula independently, in exact fractions."""
    base = max(Fraction(pool), Fraction(0))
    percent = min(max(Fraction(rule.buffer_percent), Fraction(0)), Fraction(100))
    return max(0, math.floor(base - max(Fraction(rule.buffer_units), 0) - base * percent / 100))


def group_pool_of(claims, shared: Decimal) -> int:
    return min(reference_after_buffer(shared, c.rule) for c in claims)


def service_order(claims):
    return sorted(claims, key=lambda c: (c.priority, c.channel_id, c.listing_id))


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(pool=POOLS, rule=rule_specs())
def test_pool_after_buffer_matches_the_formula(pool, rule):
    assert pool_after_buffer(pool, rule) == reference_after_buffer(pool, rule)
    assert pool_after_buffer(pool, rule) >= 0


@settings(max_examples=200, deadline=None)
@given(data=claim_sets())
def test_allocate_respects_every_limit(data):
    # given a mix of independent and group claims, each channel holding part of the pool
    shared, claims = data
    group = [c for c in claims if c.rule.strategy in GROUP_STRATEGIES]

    # when
    result = allocate(claims, shared)

    # then every listing gets a whole, non-negative quantity within its own limits
    assert list(result) == [c.listing_id for c in claims]
    for claim in claims:
        allocation = result[claim.listing_id]
        assert isinstance(allocation.quantity, int)
        assert 0 <= allocation.quantity <= reference_after_buffer(claim.pool, claim.rule)
        if claim.rule.max_shown is not None:
            assert allocation.quantity <= claim.rule.max_shown
        if claim.rule.zero_below:
            assert allocation.quantity == 0 or allocation.quantity >= claim.rule.zero_below
        assert 0 < len(allocation.reason) <= 200
        assert allocation.reason.startswith(f"{claim.rule.scope} rule: ")
        # independent claims ignore the rest of the table
        if claim.rule.strategy in INDEPENDENT_STRATEGIES:
            assert allocation == allocate_one(claim)
    # and the group together never shows more than the group pool holds
    if group:
        total = sum(result[c.listing_id].quantity for c in group)
        assert total <= group_pool_of(group, shared)


@settings(max_examples=200, deadline=None)
@given(data=claim_sets(strategies={PRIORITY}, display_caps=False))
def test_allocate_priority_serves_higher_priorities_first(data):
    shared, claims = data

    result = allocate(claims, shared)

    ordered = service_order(claims)
    for later_index, later in enumerate(ordered):
        if result[later.listing_id].quantity == 0:
            continue
        # A later claim got units, so every earlier one stopped at its cap or its own pool.
        for earlier in ordered[:later_index]:
            quantity = result[earlier.listing_id].quantity
            cap = earlier.rule.parameter
            at_cap = cap is not None and quantity == math.floor(cap)
            at_own_pool = quantity == reference_after_buffer(earlier.pool, earlier.rule)
            assert at_cap or at_own_pool
    first = ordered[0]
    expected_first = min(
        group_pool_of(claims, shared),
        reference_after_buffer(first.pool, first.rule),
        *([math.floor(first.rule.parameter)] if first.rule.parameter is not None else []),
    )
    assert result[first.listing_id].quantity == expected_first


@settings(max_examples=200, deadline=None)
@given(data=claim_sets(strategies={PRIORITY}, display_caps=False, ample_pools=True))
def test_allocate_priority_with_ample_pools_hands_out_up_to_the_caps(data):
    shared, claims = data
    caps = [c.rule.parameter for c in claims]
    group_pool = group_pool_of(claims, shared)
    ceiling = group_pool if None in caps else min(group_pool, sum(math.floor(cap) for cap in caps))

    result = allocate(claims, shared)

    assert sum(a.quantity for a in result.values()) == ceiling


@settings(max_examples=200, deadline=None)
@given(data=claim_sets(strategies={EQUAL_SPLIT}, display_caps=False, ample_pools=True))
def test_allocate_equal_split_hands_out_the_group_pool_evenly(data):
    shared, claims = data

    result = allocate(claims, shared)

    shares = [result[c.listing_id].quantity for c in service_order(claims)]
    assert sum(shares) == group_pool_of(claims, shared)
    assert max(shares) - min(shares) <= 1
    # The odd units go first in priority order.
    assert shares == sorted(shares, reverse=True)


@settings(max_examples=200, deadline=None)
@given(
    pool=POOLS,
    percent=amounts(0, 100, places=2),
    buffer_units=BUFFER_UNITS,
    buffer_percent=BUFFER_PERCENT,
)
def test_allocate_one_percentage_rounds_down(pool, percent, buffer_units, buffer_percent):
    rule = RuleSpec(
        strategy=PERCENTAGE,
        parameter=percent,
        buffer_units=buffer_units,
        buffer_percent=buffer_percent,
    )
    claim = Claim(listing_id=1, channel_id=1, priority=0, pool=pool, rule=rule)
    exact = Fraction(reference_after_buffer(pool, rule)) * Fraction(percent) / 100

    allocation = allocate_one(claim)

    assert allocation.quantity == math.floor(exact)
    assert allocation.quantity <= exact < allocation.quantity + 1


@settings(max_examples=200, deadline=None)
@given(
    pool=POOLS,
    rule=rule_specs(INDEPENDENT_STRATEGIES),
    max_shown=st.none() | st.integers(0, 500),
    zero_below=st.none() | st.integers(0, 50),
)
def test_allocate_one_applies_max_shown_then_zero_below(pool, rule, max_shown, zero_below):
    uncapped_rule = dataclasses.replace(rule, max_shown=None, zero_below=None)
    capped_rule = dataclasses.replace(rule, max_shown=max_shown, zero_below=zero_below)
    uncapped = allocate_one(
        Claim(listing_id=1, channel_id=1, priority=0, pool=pool, rule=uncapped_rule)
    )

    allocation = allocate_one(
        Claim(listing_id=1, channel_id=1, priority=0, pool=pool, rule=capped_rule)
    )

    expected = uncapped.quantity if max_shown is None else min(uncapped.quantity, max_shown)
    if zero_below and expected < zero_below:
        expected = 0
    assert allocation.quantity == expected
    assert allocation.quantity == 0 or not zero_below or allocation.quantity >= zero_below


@settings(max_examples=200, deadline=None)
@given(data=claim_sets(strategies={DEMAND_WEIGHTED}))
def test_allocate_demand_weighted_without_sales_is_an_equal_split(data):
    shared, claims = data
    unsold = [dataclasses.replace(c, sales=D(0)) for c in claims]
    equal = [
        dataclasses.replace(c, rule=dataclasses.replace(c.rule, strategy=EQUAL_SPLIT))
        for c in unsold
    ]

    weighted_result = allocate(unsold, shared)
    equal_result = allocate(equal, shared)

    assert {k: a.quantity for k, a in weighted_result.items()} == {
        k: a.quantity for k, a in equal_result.items()
    }


@settings(max_examples=200, deadline=None)
@given(data=claim_sets(strategies={DEMAND_WEIGHTED}, display_caps=False, ample_pools=True))
def test_allocate_demand_weighted_follows_sales(data):
    shared, claims = data
    group_pool = group_pool_of(claims, shared)
    total_sales = sum(Fraction(c.sales) for c in claims)

    result = allocate(claims, shared)

    quantities = {c.listing_id: result[c.listing_id].quantity for c in claims}
    assert sum(quantities.values()) == group_pool
    for more in claims:
        for fewer in claims:
            if more.sales > fewer.sales:
                assert quantities[more.listing_id] >= quantities[fewer.listing_id]
        if total_sales:
            exact = Fraction(group_pool) * Fraction(more.sales) / total_sales
            assert abs(quantities[more.listing_id] - exact) < 1


# ---------------------------------------------------------------------------------------------
# Worked examples
# ---------------------------------------------------------------------------------------------


def claim(listing_id, rule, *, pool="10", channel_id=None, priority=0, sales="0"):
    return Claim(
        listing_id=listing_id,
        channel_id=listing_id if channel_id is None else channel_id,
        priority=priority,
        pool=D(pool),
        rule=rule,
        sales=D(sales),
    )


@pytest.mark.parametrize(
    ("pool", "units", "percent", "expected"),
    [
        ("20", "1", "10", 17),  # 20 - 1 - 2
        ("10.9", "0", "0", 10),  # whole units only
        ("7", "0", "12.5", 6),  # 7 - 0.875 = 6.125
        ("3", "5", "0", 0),  # a buffer larger than the pool leaves nothing, not less
        ("-5", "0", "0", 0),  # a negative pool counts as 0
    ],
)
def test_pool_after_buffer_worked_examples(pool, units, percent, expected):
    rule = RuleSpec(buffer_units=D(units), buffer_percent=D(percent))

    assert pool_after_buffer(D(pool), rule) == expected


def test_allocate_one_percentage_of_the_buffered_pool():
    # given 20 in stock, 3 held back, and a 50% rule
    rule = RuleSpec(strategy=PERCENTAGE, parameter=D("50.00"), buffer_units=D("3.000"))

    # when
    allocation = allocate_one(claim(1, rule, pool="20.000"))

    # then half of 17 rounds down to 8
    assert allocation.quantity == 8
    assert allocation.reason == "channel rule: percentage 50% of 17 (pool 20, buffer 3)"


def test_allocate_one_fixed_is_limited_by_the_pool():
    # given a fixed 5 but only 3 in stock, and a fixed rule without a quantity
    five = RuleSpec(strategy=FIXED, parameter=D(5), scope="listing")
    unset = RuleSpec(strategy=FIXED)

    # when / then
    assert allocate_one(claim(1, five, pool="3")).quantity == 3
    assert allocate_one(claim(1, five, pool="3")).reason == "listing rule: fixed 5 of 3 (pool 3)"
    assert allocate_one(claim(1, unset, pool="3")).quantity == 0


def test_allocate_one_zero_below_hides_a_small_quantity():
    # given 4 in stock and a rule that shows nothing below 5
    rule = RuleSpec(strategy=ALL, zero_below=5)

    # when
    allocation = allocate_one(claim(1, rule, pool="4"))

    # then
    assert allocation.quantity == 0
    assert allocation.reason == "channel rule: all 4 (pool 4); zero below 5 (was 4)"


def test_allocate_one_max_shown_caps_a_large_pool():
    # given 500 in stock and a rule that shows at most 100
    rule = RuleSpec(strategy=ALL, max_shown=100, scope="product")

    # when
    allocation = allocate_one(claim(1, rule, pool="500"))

    # then
    assert allocation.quantity == 100
    assert allocation.reason == "product rule: all 500 (pool 500); max shown 100"


def test_allocate_priority_fills_caps_in_order_with_ties_by_channel():
    # given 12 units; channel 3 goes first with a cap of 10; channels 1 and 2 tie after it
    first = claim(
        1, RuleSpec(strategy=PRIORITY, parameter=D(10)), pool="12", channel_id=3, priority=1
    )
    tie_second = claim(2, RuleSpec(strategy=PRIORITY), pool="12", channel_id=2, priority=2)
    tie_first = claim(3, RuleSpec(strategy=PRIORITY), pool="12", channel_id=1, priority=2)

    # when
    result = allocate([first, tie_second, tie_first], D(12))

    # then channel 1 wins the tie and takes the 2 left; channel 2 gets nothing
    assert {k: a.quantity for k, a in result.items()} == {1: 10, 2: 0, 3: 2}
    assert result[1].reason == "channel rule: priority 1st: 10 of 12 left, cap 10 (shared pool 12)"
    assert result[3].reason == "channel rule: priority 2nd: 2 of 2 left, no cap (shared pool 12)"


def test_allocate_equal_split_gives_the_odd_units_in_priority_order():
    # given 10 units between three channels, listing 3 highest priority
    rule = RuleSpec(strategy=EQUAL_SPLIT)
    claims = [claim(1, rule, priority=3), claim(2, rule, priority=2), claim(3, rule, priority=1)]

    # when
    result = allocate(claims, D(10))

    # then
    assert {k: a.quantity for k, a in result.items()} == {1: 3, 2: 3, 3: 4}
    assert result[3].reason == "channel rule: equal split: 4 of 10 between 3 (shared pool 10)"


def test_allocate_mixed_group_uses_the_largest_buffer_and_serves_priority_first():
    # given 11 units shared; one member holds 1 back, so the group shares 10
    priority = claim(1, RuleSpec(strategy=PRIORITY, parameter=D(4)), pool="11", priority=1)
    split_a = claim(2, RuleSpec(strategy=EQUAL_SPLIT, buffer_units=D(1)), pool="11", priority=2)
    split_b = claim(3, RuleSpec(strategy=EQUAL_SPLIT), pool="11", priority=3)
    # and an independent channel that ignores the group
    half = claim(4, RuleSpec(strategy=PERCENTAGE, parameter=D(50)), pool="11")

    # when
    result = allocate([priority, split_a, split_b, half], D(11))

    # then the priority channel takes its 4, the split shares the other 6
    assert {k: a.quantity for k, a in result.items()} == {1: 4, 2: 3, 3: 3, 4: 5}
    assert result[2].reason == (
        "channel rule: equal split: 3 of 6 between 2 (shared pool 11, after buffer 10)"
    )


def test_allocate_demand_weighted_splits_by_sales():
    # given 10 units and sales of 3, 1 and 0 units
    rule = RuleSpec(strategy=DEMAND_WEIGHTED)
    claims = [
        claim(1, rule, priority=1, sales="3"),
        claim(2, rule, priority=2, sales="1"),
        claim(3, rule, priority=3, sales="0"),
    ]

    # when
    result = allocate(claims, D(10))

    # then 7.5 and 2.5 tie on the remainder; the odd unit goes to the higher priority
    assert {k: a.quantity for k, a in result.items()} == {1: 8, 2: 2, 3: 0}
    assert result[1].reason == (
        "channel rule: demand weighted: 8 of 10, sales 3 of 4 (shared pool 10)"
    )


def test_allocate_group_share_is_capped_by_the_channel_own_pool():
    # given 10 units shared, but the first channel's warehouses hold only 3
    rule = RuleSpec(strategy=EQUAL_SPLIT)
    claims = [claim(1, rule, pool="3", priority=1), claim(2, rule, pool="10", priority=2)]

    # when
    result = allocate(claims, D(10))

    # then the first channel shows only its own 3; its unused share is not passed on
    assert {k: a.quantity for k, a in result.items()} == {1: 3, 2: 5}
    assert result[1].reason.endswith("; own pool 3")


def test_allocate_negative_pools_show_nothing():
    # given oversold stock
    claims = [
        claim(1, RuleSpec(strategy=ALL), pool="-4"),
        claim(2, RuleSpec(strategy=PRIORITY), pool="-4"),
        claim(3, RuleSpec(strategy=EQUAL_SPLIT), pool="-4"),
    ]

    # when
    result = allocate(claims, D(-4))

    # then
    assert {k: a.quantity for k, a in result.items()} == {1: 0, 2: 0, 3: 0}


def test_allocate_rejects_an_unknown_strategy():
    bogus = claim(1, RuleSpec(strategy="lottery"))

    with pytest.raises(ValueError, match="unknown allocation strategy 'lottery'"):
        allocate([bogus], D(10))
    with pytest.raises(ValueError, match="unknown allocation strategy 'lottery'"):
        allocate_one(bogus)


def test_allocate_one_rejects_a_group_strategy():
    with pytest.raises(ValueError, match="use allocate"):
        allocate_one(claim(1, RuleSpec(strategy=EQUAL_SPLIT)))


def test_allocate_rejects_a_listing_claimed_twice():
    rule = RuleSpec()

    with pytest.raises(ValueError, match="listing 1 is claimed twice"):
        allocate([claim(1, rule), claim(1, rule, channel_id=2)], D(10))


def test_allocation_strategies_match_the_rule_choices():
    assert set(AllocationRule.Strategy.values) == STRATEGIES
