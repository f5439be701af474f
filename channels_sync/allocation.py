"""Decide how many units of one product each channel may show.

Pure functions: Decimal stock in, whole units out, no database. The caller resolves which
`AllocationRule` applies to each listing (listing, then product, then the channel default),
sums `available` over each channel's warehouses, and groups the claims by product.

Semantics, in the order they apply:

- Channels show whole units: every result is ``max(0, floor(...))``. A negative pool counts
  as 0.
- Buffer: ``pool_after_buffer = max(0, floor(pool - buffer_units - pool * buffer_percent / 100))``
  where ``pool`` is first raised to 0 if negative. A negative ``buffer_units`` counts as 0 and
  ``buffer_percent`` is clamped to 0..100, so a buffer never adds stock.
- Independent strategies look only at the claim's own pool after its own buffer:
  ``all`` takes all of it; ``percentage`` p takes ``floor(pool_after_buffer * p / 100)``
  (rounds down; p clamped to 0..100, None counts as 0); ``fixed`` n takes
  ``min(floor(n), pool_after_buffer)`` (None or negative counts as 0).
- Group strategies (``priority``, ``equal_split``, ``demand_weighted``) share ``shared_pool``,
  the stock over the union of the claimants' channels' warehouses. The group pool is
  ``shared_pool`` after the largest buffer among the group's claims, each member's buffer
  computed on the shared pool. Members are served in sequence from that one pool, so the sum
  over all group claims never exceeds it:

  1. ``priority`` claims in priority order (lower ``priority`` first, ties by ``channel_id``,
     then ``listing_id``), each taking ``min(floor(cap), what is left)``; a cap of None takes
     all that is left.
  2. ``equal_split`` claims share what is left: ``floor(left / n)`` each, and the remaining
     units go one each to the equal-split claims in priority order, so they hand out all of
     ``left``. Nothing is then left for ``demand_weighted`` claims in the same group.
  3. ``demand_weighted`` claims share what is then left in proportion to ``sales`` (negative
     sales count as 0): each gets the floor of its exact share, and the leftover units go to
     the largest fractional remainders, ties in priority order. When every claim's sales are
     zero the split is the equal split above.

  Units a member cannot use (see the caps below) are not passed on to later members.
- Then, for every claim: cap at the claim's own pool after its own buffer (a channel never
  shows more than its own warehouses hold), then at ``max_shown``, then ``zero_below``: a
  quantity below ``zero_below`` becomes 0.

Every result carries a short reason (at most 200 characters) naming the rule's scope, the
strategy's arithmetic and any cap that changed the number, for the dry-run table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

# The values of AllocationRule.Strategy; kept here so this module needs no ORM import.
ALL = "all"
PERCENTAGE = "percentage"
FIXED = "fixed"
PRIORITY = "priority"
EQUAL_SPLIT = "equal_split"
DEMAND_WEIGHTED = "demand_weighted"

INDEPENDENT_STRATEGIES = frozenset({ALL, PERCENTAGE, FIXED})
GROUP_STRATEGIES = frozenset({PRIORITY, EQUAL_SPLIT, DEMAND_WEIGHTED})
STRATEGIES = INDEPENDENT_STRATEGIES | GROUP_STRATEGIES

REASON_MAX_LENGTH = 200

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class RuleSpec:
    """The parts of an AllocationRule the arithmetic needs."""

    strategy: str = ALL
    # percentage: the percent (0..100); fixed: the quantity; priority: the cap (None = no cap).
    parameter: Decimal | None = None
    buffer_units: Decimal = _ZERO
    buffer_percent: Decimal = _ZERO
    max_shown: int | None = None
    zero_below: int | None = None
    # Which rule applied (channel, product, listing or default); only used in the reason.
    scope: str = "channel"


@dataclass(frozen=True)
class Claim:
    """One channel's listing of one product."""

    listing_id: int
    channel_id: int
    priority: int  # lower goes first; ties by channel_id
    pool: Decimal  # available over this channel's warehouses (may be negative)
    rule: RuleSpec
    sales: Decimal = _ZERO  # last 30 days' committed sales of the product on this channel


@dataclass(frozen=True)
class Allocation:
    """The units a listing may show, and why."""

    quantity: int
    reason: str


def pool_after_buffer(pool: Decimal, rule: RuleSpec) -> int:
    """Return the whole units of `pool` left after the rule's buffer; never negative."""
    base = max(Decimal(pool), _ZERO)
    units = max(Decimal(rule.buffer_units), _ZERO)
    held_percent = base * _clamp_percent(rule.buffer_percent) / _HUNDRED
    return max(0, math.floor(base - units - held_percent))


def one_for_one(rule: RuleSpec) -> bool:
    """Whether the rule shows the pool unit for unit: strategy `all` with no buffer, no
    maximum shown and no zero-below. Only then does a change of the channel's quantity
    stand for the same change of our stock."""
    return (
        rule.strategy == ALL
        and Decimal(rule.buffer_units) <= 0
        and Decimal(rule.buffer_percent) <= 0
        and rule.max_shown is None
        and not rule.zero_below
    )


def rule_describe(rule: RuleSpec) -> str:
    """The rule in a few words: "product rule: percentage 50, buffer 2 + 10%, max shown 5"."""
    parts = [rule.strategy]
    if rule.parameter is not None and rule.strategy != ALL:
        parts[0] += f" {_fmt(rule.parameter)}"
    held = []
    if Decimal(rule.buffer_units) > 0:
        held.append(_fmt(rule.buffer_units))
    if Decimal(rule.buffer_percent) > 0:
        held.append(f"{_fmt(rule.buffer_percent)}%")
    if held:
        parts.append(f"buffer {' + '.join(held)}")
    if rule.max_shown is not None:
        parts.append(f"max shown {rule.max_shown}")
    if rule.zero_below:
        parts.append(f"zero below {rule.zero_below}")
    return f"{rule.scope} rule: {', '.join(parts)}"


def allocate_one(claim: Claim) -> Allocation:
    """Allocate a claim whose strategy (all, percentage, fixed) ignores other channels.

    Raises ValueError for a group strategy (use `allocate`) or an unknown one.
    """
    rule = claim.rule
    _check_strategy(rule.strategy)
    if rule.strategy in GROUP_STRATEGIES:
        raise ValueError(f"{rule.strategy!r} shares a pool between channels; use allocate()")
    own = pool_after_buffer(claim.pool, rule)
    if rule.strategy == ALL:
        quantity = own
        body = f"all {own}"
    elif rule.strategy == PERCENTAGE:
        percent = _clamp_percent(rule.parameter)
        quantity = math.floor(own * percent / _HUNDRED)
        body = f"percentage {_fmt(percent)}% of {own}"
    else:
        fixed = max(0, math.floor(rule.parameter)) if rule.parameter is not None else 0
        quantity = min(fixed, own)
        body = f"fixed {fixed} of {own}"
    return _finish(claim, quantity, f"{body} ({_pool_text(claim.pool, rule)})", own)


def allocate(claims: Sequence[Claim], shared_pool: Decimal) -> dict[int, Allocation]:
    """Allocate one product across the claims of every channel listing it.

    `shared_pool` is the available stock over the union of the claimants' channels'
    warehouses; only group strategies use it. Returns one Allocation per listing_id, in the
    order of `claims`. Raises ValueError for an unknown strategy or a repeated listing_id.
    """
    seen: set[int] = set()
    for claim in claims:
        _check_strategy(claim.rule.strategy)
        if claim.listing_id in seen:
            raise ValueError(f"listing {claim.listing_id} is claimed twice")
        seen.add(claim.listing_id)

    results: dict[int, Allocation] = {}
    group = [c for c in claims if c.rule.strategy in GROUP_STRATEGIES]
    if group:
        results.update(_allocate_group(group, shared_pool))
    for claim in claims:
        if claim.rule.strategy in INDEPENDENT_STRATEGIES:
            results[claim.listing_id] = allocate_one(claim)
    return {claim.listing_id: results[claim.listing_id] for claim in claims}


def _allocate_group(group: Sequence[Claim], shared_pool: Decimal) -> dict[int, Allocation]:
    # Each member's buffer taken on the shared pool; the largest one leaves the smallest pool.
    group_pool = min(pool_after_buffer(shared_pool, c.rule) for c in group)
    ordered = sorted(group, key=_service_order)
    left = group_pool
    drafts: dict[int, tuple[int, str]] = {}

    by_priority = [c for c in ordered if c.rule.strategy == PRIORITY]
    for position, claim in enumerate(by_priority, start=1):
        cap = _cap(claim.rule.parameter)
        take = left if cap is None else min(cap, left)
        cap_text = "no cap" if cap is None else f"cap {cap}"
        drafts[claim.listing_id] = (
            take,
            f"priority {_ordinal(position)}: {take} of {left} left, {cap_text}",
        )
        left -= take

    equal = [c for c in ordered if c.rule.strategy == EQUAL_SPLIT]
    if equal:
        shares = _equal_shares(left, len(equal))
        for claim, share in zip(equal, shares, strict=True):
            drafts[claim.listing_id] = (
                share,
                f"equal split: {share} of {left} between {len(equal)}",
            )
        left -= sum(shares)

    weighted = [c for c in ordered if c.rule.strategy == DEMAND_WEIGHTED]
    if weighted:
        sales = [max(Decimal(c.sales), _ZERO) for c in weighted]
        total_sales = sum(sales, _ZERO)
        shares = _weighted_shares(left, sales)
        for claim, share, sold in zip(weighted, shares, sales, strict=True):
            basis = (
                f"sales {_fmt(sold)} of {_fmt(total_sales)}"
                if total_sales > 0
                else "no sales, split equally"
            )
            drafts[claim.listing_id] = (share, f"demand weighted: {share} of {left}, {basis}")

    pool_text = f"shared pool {_fmt(shared_pool)}"
    if group_pool != max(0, math.floor(Decimal(shared_pool))):
        pool_text += f", after buffer {group_pool}"
    return {
        claim.listing_id: _finish(
            claim,
            drafts[claim.listing_id][0],
            f"{drafts[claim.listing_id][1]} ({pool_text})",
            pool_after_buffer(claim.pool, claim.rule),
        )
        for claim in ordered
    }


def _finish(claim: Claim, quantity: int, body: str, own: int) -> Allocation:
    """Apply the own-pool cap, max_shown and zero_below, and write the reason."""
    rule = claim.rule
    notes: list[str] = []
    if quantity > own:
        notes.append(f"own pool {own}")
        quantity = own
    if rule.max_shown is not None and quantity > rule.max_shown:
        quantity = max(0, rule.max_shown)
        notes.append(f"max shown {quantity}")
    if rule.zero_below and 0 < quantity < rule.zero_below:
        notes.append(f"zero below {rule.zero_below} (was {quantity})")
        quantity = 0
    quantity = max(0, quantity)
    reason = "; ".join([f"{rule.scope} rule: {body}", *notes])
    return Allocation(quantity=quantity, reason=_shorten(reason))


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown allocation strategy {strategy!r}")


def _service_order(claim: Claim) -> tuple[int, int, int]:
    return (claim.priority, claim.channel_id, claim.listing_id)


def _clamp_percent(value: Decimal | None) -> Decimal:
    if value is None:
        return _ZERO
    return min(max(Decimal(value), _ZERO), _HUNDRED)


def _cap(value: Decimal | None) -> int | None:
    return None if value is None else max(0, math.floor(value))


def _equal_shares(total: int, count: int) -> list[int]:
    """Split `total` into `count` shares differing by at most 1, the larger ones first."""
    base, extra = divmod(total, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _weighted_shares(total: int, weights: Sequence[Decimal]) -> list[int]:
    """Split `total` in proportion to `weights` by largest remainder; ties go first in order."""
    weight_sum = sum(weights, _ZERO)
    if weight_sum <= 0:
        return _equal_shares(total, len(weights))
    # Fractions keep the shares exact, so equal weights always tie and rounding never drifts.
    exact = [Fraction(total) * Fraction(w) / Fraction(weight_sum) for w in weights]
    shares = [math.floor(share) for share in exact]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for index in by_remainder[:leftover]:
        shares[index] += 1
    return shares


def _pool_text(pool: Decimal, rule: RuleSpec) -> str:
    units = max(Decimal(rule.buffer_units), _ZERO)
    percent = _clamp_percent(rule.buffer_percent)
    held = []
    if units > 0:
        held.append(_fmt(units))
    if percent > 0:
        held.append(f"{_fmt(percent)}%")
    text = f"pool {_fmt(pool)}"
    return f"{text}, buffer {' + '.join(held)}" if held else text


def _fmt(value: Decimal | int) -> str:
    """Write a quantity without trailing zeros or exponent: 20.000 -> 20, 2.50 -> 2.5."""
    number = Decimal(value)
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _ordinal(position: int) -> str:
    if 10 <= position % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(position % 10, "th")
    return f"{position}{suffix}"


def _shorten(text: str) -> str:
    if len(text) <= REASON_MAX_LENGTH:
        return text
    return text[: REASON_MAX_LENGTH - 3] + "..."
