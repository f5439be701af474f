"""Settling conflicts: one strategy per resolution, by a person or by the channel's policy.

Strategies for a `stock_mismatch` (ours: what we last pushed; theirs: what the channel shows):

- `use_ours`: the channel must show our quantity again. The observed quantity is recorded
  as the listing's last pushed one and the listing is marked dirty, so the push sends the
  desired quantity whenever it differs from what the channel shows. Resolved value: the
  desired quantity at resolution.
- `use_theirs`: our stock moves by (theirs - ours): one `adjust` movement (source
  `conflict`, reference `conflict:<id>`, a reason naming the conflict and the figures) in
  one of the channel's active warehouses: the vendor's default one if the channel sells
  from it, else the first by id; for a decrease, the first of those whose available stock
  covers it (none: 409 `insufficient_stock`; no warehouse at all: 409
  `no_channel_warehouse`). The listing is then recorded as showing theirs and re-planned.
  Resolved value: theirs.
- `minimum`: `use_theirs` when theirs is below ours, else `use_ours`.
- `set_value` (a value >= 0): our stock moves by (value - ours) as for `use_theirs`, then
  the push sends the new desired quantity. Resolved value: the value.
- `last_write_wins`: `use_theirs` when the channel's figure is newer (`theirs_at` after
  `ours_at`; a missing time counts as older), else `use_ours` (ties go to ours).
- `source_priority`: `use_theirs` when the conflict's channel comes first (lowest
  `priority`, then id) among the vendor's active channels listing the product: the
  highest-priority channel is the source of truth; else `use_ours`.
- `ignore`: status `ignored`; nothing changes.

For an `oversell` only `use_ours` (every listing of the product is sent its quantity
again), `set_value` (a stock count at the sold line's warehouse: `stock_set`) and `ignore`
apply; for a `duplicate_order` only `use_ours` (both orders stay as they are) and
`ignore`. Anything else: 409 `strategy_not_applicable`.

A resolution locks, in this order, the stock levels it may change, the product's listings
and the conflict's row: the order the order services take them in, so the two never wait
in a cycle. The movement, the conflict's new status and its `ConflictEvent` commit
together; the push is queued after the commit (the dirty marks). A conflict no longer open
answers 409 `conflict_not_open`: of two resolutions at once, the second finds it resolved.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from channels_sync.errors import (
    ConflictNotOpen,
    InvalidResolutionValue,
    NoChannelWarehouse,
    StrategyNotApplicable,
)
from channels_sync.models import (
    ChannelListing,
    Conflict,
    ConflictEvent,
    ConflictPolicy,
    ConflictStrategy,
)
from channels_sync.selectors_conflicts import (
    channel_ranks_first,
    conflict_get,
    listing_desired_quantity,
)
from channels_sync.services.conflicts import SYSTEM_ACTOR, conflict_event
from channels_sync.services.dirty import listings_mark_dirty
from channels_sync.services.reconcile_guard import auto_resolve_deferred
from core.errors import DomainError
from inventory.errors import InsufficientStock
from inventory.locks import stock_levels_lock
from inventory.models import Product, StockLevel, Warehouse
from inventory.services.stock import Origin, quantity_clean, stock_adjust, stock_set

logger = structlog.get_logger(__name__)

S = ConflictStrategy
K = Conflict.Kind

APPLICABLE: dict[str, tuple[str, ...]] = {
    K.STOCK_MISMATCH: tuple(S.values),
    K.OVERSELL: (S.USE_OURS, S.SET_VALUE, S.IGNORE),
    K.DUPLICATE_ORDER: (S.USE_OURS, S.IGNORE),
}
# Strategies that may move our stock of a stock mismatch (their levels are locked first).
_MAY_MOVE_STOCK = frozenset(
    {S.USE_THEIRS, S.SET_VALUE, S.MINIMUM, S.LAST_WRITE_WINS, S.SOURCE_PRIORITY}
)


@dataclass
class Outcome:
    """What a resolution did: the strategy applied in the end, the value, the movements."""

    applied: str
    value: Decimal | None = None
    movements: list[int] = field(default_factory=list)
    warehouse: str = ""
    delta: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "value": None if self.value is None else str(self.value),
            "movements": self.movements,
            "warehouse": self.warehouse,
            "delta": None if self.delta is None else str(self.delta),
        }


def strategy_check(conflict: Conflict, strategy: str, value: Any = None) -> Decimal | None:
    """Refuse a strategy that does not apply to the conflict; return the cleaned value.

    `strategy_not_applicable` (409) for a strategy of another kind, or for anything but
    `ignore` once a stock mismatch's listing is gone; `invalid_value` (400, field `value`)
    for `set_value` without a value of 0 or more, or a value given to another strategy.
    """
    strategy = str(strategy)
    applicable = [str(name) for name in APPLICABLE.get(conflict.kind, (S.IGNORE,))]
    if strategy not in applicable:
        raise StrategyNotApplicable(
            f"{strategy!r} does not apply to this {conflict.get_kind_display()} conflict; "
            f"use one of: {', '.join(applicable)}.",
            details={"strategy": strategy, "applicable": applicable},
        )
    if conflict.kind == K.STOCK_MISMATCH and strategy != S.IGNORE and conflict.listing_id is None:
        raise StrategyNotApplicable(
            "The conflict's listing was deleted: it can only be ignored.",
            details={"strategy": strategy, "applicable": [S.IGNORE]},
        )
    if strategy != S.SET_VALUE:
        if value is not None:
            raise InvalidResolutionValue(
                "Only set_value takes a value.", details={"field": "value"}
            )
        return None
    if value is None:
        raise InvalidResolutionValue("set_value needs a value.", details={"field": "value"})
    try:
        cleaned = quantity_clean(value)
    except DomainError as exc:
        raise InvalidResolutionValue(exc.message, details={"field": "value"}) from exc
    if cleaned < 0:
        raise InvalidResolutionValue("The value must be 0 or more.", details={"field": "value"})
    return cleaned


def conflict_resolve(
    *,
    conflict_id: int | str,
    strategy: str,
    actor: str,
    value: Any = None,
    note: str = "",
    auto: bool = False,
) -> Conflict:
    """Resolve an open conflict with a strategy (see the module); return it, resolved.

    `auto` marks a resolution by the channel's policy (status `auto_resolved`). Refuses:
    `conflict_not_found`, `conflict_not_open`, `strategy_not_applicable`, `invalid_value`,
    and the stock services' refusals (`insufficient_stock`, `no_channel_warehouse`, ...),
    which leave the conflict open and change nothing. Idempotent in effect: a conflict is
    resolved once (the row lock and the status check); its stock movement is also keyed
    `conflict:<id>`. Queues the push after the commit.
    """
    conflict = conflict_get(conflict_id=conflict_id)
    value = strategy_check(conflict, strategy, value)
    if conflict.status != Conflict.Status.OPEN:
        raise _not_open(conflict)
    pairs = _level_pairs(conflict, strategy)
    with transaction.atomic():
        locked_levels = stock_levels_lock(pairs) if pairs else {}
        levels = [locked_levels[(p.pk, w.pk)] for p, w in pairs]
        if strategy != S.IGNORE and conflict.product_id is not None:
            list(
                ChannelListing.objects.select_for_update()
                .filter(product_id=conflict.product_id)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        locked = (
            Conflict.objects.select_for_update(of=("self",))
            .select_related("channel", "listing", "product")
            .get(pk=conflict.pk)
        )
        if locked.status != Conflict.Status.OPEN:
            raise _not_open(locked)
        outcome = _apply(locked, strategy, value, levels=levels, actor=actor)
        if strategy == S.IGNORE:
            status, action = Conflict.Status.IGNORED, ConflictEvent.Action.IGNORED
        elif auto:
            status, action = Conflict.Status.AUTO_RESOLVED, ConflictEvent.Action.AUTO_RESOLVED
        else:
            status, action = Conflict.Status.RESOLVED, ConflictEvent.Action.RESOLVED
        locked.status = status
        locked.strategy = strategy
        locked.resolved_value = outcome.value
        locked.resolved_by = actor[:150]
        locked.resolved_at = timezone.now()
        locked.note = note[:1000]
        locked.details = {**(locked.details or {}), "resolution": outcome.as_dict()}
        locked.save()
        conflict_event(
            locked,
            action,
            actor=actor,
            strategy=strategy,
            ours=locked.ours,
            theirs=locked.theirs,
            value=outcome.value,
            note=note[:1000],
        )
    logger.info(
        "conflict.resolved",
        conflict_id=locked.pk,
        kind=locked.kind,
        strategy=strategy,
        applied=outcome.applied,
        value=None if outcome.value is None else str(outcome.value),
        status=status,
        actor=actor,
    )
    return locked


def conflict_auto_resolve(*, conflict_id: int) -> str:
    """Resolve an open stock mismatch by its channel's policy; say what happened.

    `skipped`: gone, no longer open, not a stock mismatch, or the policy is now manual.
    `deferred`: the channel shows less than ours and no order poll has covered the
    observation yet (`reconcile_guard`).
    `failed`: the strategy was refused (e.g. a decrease our stock cannot take); a `failed`
    event records why and the conflict stays open for a person. `resolved` otherwise.
    Other errors propagate (the task retries them).
    """
    conflict = Conflict.objects.select_related("channel").filter(pk=conflict_id).first()
    if (
        conflict is None
        or conflict.status != Conflict.Status.OPEN
        or conflict.kind != K.STOCK_MISMATCH
        or conflict.channel is None
    ):
        return "skipped"
    policy = conflict.channel.conflict_policy
    if policy == ConflictPolicy.MANUAL:
        return "skipped"
    if auto_resolve_deferred(conflict):
        return "deferred"  # a late sale? the channel's next order poll queues it again
    try:
        conflict_resolve(conflict_id=conflict.pk, strategy=policy, actor=SYSTEM_ACTOR, auto=True)
    except ConflictNotOpen:
        return "skipped"  # a person (or another run) settled it first
    except DomainError as exc:
        with transaction.atomic():
            conflict_event(
                conflict,
                ConflictEvent.Action.FAILED,
                actor=SYSTEM_ACTOR,
                strategy=policy,
                ours=conflict.ours,
                theirs=conflict.theirs,
                note=f"{exc.code}: {exc.message}"[:1000],
            )
        logger.warning(
            "conflict.auto_resolve_failed",
            conflict_id=conflict.pk,
            strategy=policy,
            code=exc.code,
            error=exc.message,
        )
        return "failed"
    return "resolved"


def _not_open(conflict: Conflict) -> ConflictNotOpen:
    return ConflictNotOpen(
        f"Conflict {conflict.pk} is {conflict.status} already.",
        details={"id": conflict.pk, "status": conflict.status},
    )


def _channel_warehouses(conflict: Conflict) -> list[Warehouse]:
    """The channel's active warehouses of the product's vendor: the default one first."""
    if conflict.channel_id is None or conflict.product is None:
        return []
    return list(
        Warehouse.objects.filter(
            channels=conflict.channel_id, active=True, vendor_id=conflict.product.vendor_id
        ).order_by("-is_default", "pk")
    )


def _level_pairs(conflict: Conflict, strategy: str) -> list[tuple[Product, Warehouse]]:
    """The (product, warehouse) levels this resolution may change, in preference order."""
    product = conflict.product
    if product is None or strategy == S.IGNORE:
        return []
    if conflict.kind == K.STOCK_MISMATCH and strategy in _MAY_MOVE_STOCK:
        return [(product, warehouse) for warehouse in _channel_warehouses(conflict)]
    if conflict.kind == K.OVERSELL and strategy == S.SET_VALUE:
        warehouse = Warehouse.objects.filter(
            pk=(conflict.details or {}).get("warehouse_id"), vendor_id=product.vendor_id
        ).first()
        if warehouse is None:
            raise StrategyNotApplicable(
                "The oversold line's warehouse is unknown: count the stock in the inventory "
                "console, then resolve with use_ours.",
                details={"strategy": strategy},
            )
        return [(product, warehouse)]
    return []


def _apply(
    conflict: Conflict,
    strategy: str,
    value: Decimal | None,
    *,
    levels: list[StockLevel],
    actor: str,
) -> Outcome:
    """Carry out the strategy on the locked conflict (inside the resolution's transaction)."""
    if strategy == S.IGNORE:
        return Outcome(applied=S.IGNORE)
    if conflict.kind == K.DUPLICATE_ORDER:
        return Outcome(applied=S.USE_OURS)  # both orders stand as they are
    if conflict.kind == K.OVERSELL:
        if strategy == S.USE_OURS:
            _product_repush(conflict)
            return Outcome(applied=S.USE_OURS)
        return _oversell_count(conflict, value, level=levels[0], actor=actor)
    applied = _choose(conflict, strategy)
    if applied == S.USE_OURS:
        _listing_repush(conflict)
        return Outcome(applied=S.USE_OURS, value=_desired(conflict))
    if conflict.ours is None:
        raise StrategyNotApplicable(
            "Nothing was pushed to this listing yet: there is no figure of ours to move from.",
            details={"strategy": strategy},
        )
    target = conflict.theirs if applied == S.USE_THEIRS else value
    outcome = _stock_move(conflict, target - conflict.ours, levels=levels, actor=actor)
    outcome.applied, outcome.value = applied, target
    _listing_repush(conflict)
    return outcome


def _choose(conflict: Conflict, strategy: str) -> str:
    """The strategy a stock mismatch comes down to: use_ours, use_theirs or set_value."""
    ours, theirs = conflict.ours, conflict.theirs
    if strategy in (S.USE_OURS, S.SET_VALUE):
        return strategy
    if strategy == S.USE_THEIRS:
        if theirs is None:
            raise StrategyNotApplicable(
                "The channel reported no figure to take.", details={"strategy": strategy}
            )
        return S.USE_THEIRS
    if theirs is None:
        return S.USE_OURS
    if strategy == S.MINIMUM:
        return S.USE_THEIRS if ours is not None and theirs < ours else S.USE_OURS
    if strategy == S.LAST_WRITE_WINS:
        theirs_at, ours_at = conflict.theirs_at, conflict.ours_at
        newer = theirs_at is not None and (ours_at is None or theirs_at > ours_at)
        return S.USE_THEIRS if newer else S.USE_OURS
    if strategy == S.SOURCE_PRIORITY:
        return S.USE_THEIRS if channel_ranks_first(conflict) else S.USE_OURS
    raise StrategyNotApplicable(details={"strategy": strategy})


def _desired(conflict: Conflict) -> Decimal | None:
    quantity = listing_desired_quantity(conflict.listing)
    return None if quantity is None else Decimal(quantity)


def _origin(conflict: Conflict, actor: str, text: str) -> Origin:
    channel = conflict.channel.name if conflict.channel else "no channel"
    return Origin(
        source="conflict",
        actor=actor,
        reason=(
            f"conflict #{conflict.pk} ({conflict.kind} on {channel}): ours {conflict.ours}, "
            f"theirs {conflict.theirs}; {text}"
        ),
        reference=f"conflict:{conflict.pk}",
    )


def _stock_move(
    conflict: Conflict, delta: Decimal, *, levels: list[StockLevel], actor: str
) -> Outcome:
    """Move our stock of the product by `delta` in one of the channel's warehouses (locked)."""
    outcome = Outcome(applied="", delta=delta)
    if delta == 0:
        return outcome
    product = conflict.product
    if not levels:
        raise NoChannelWarehouse(details={"channel_id": conflict.channel_id})
    level = levels[0]
    if delta < 0 and product.stock_is_enforced:
        level = next((lv for lv in levels if lv.available + delta >= 0), None)
        if level is None:
            best = max(levels, key=lambda lv: lv.available)
            raise InsufficientStock(
                sku=product.sku,
                warehouse=best.warehouse.code,
                available=best.available,
                requested=-delta,
            )
    mutation = stock_adjust(
        product=product,
        warehouse=level.warehouse,
        delta=delta,
        origin=_origin(conflict, actor, f"our stock moved by {delta}"),
        idempotency_key=f"conflict:{conflict.pk}",
    )
    outcome.movements = [movement.pk for movement in mutation.movements]
    outcome.warehouse = level.warehouse.code
    return outcome


def _oversell_count(
    conflict: Conflict, value: Decimal, *, level: StockLevel, actor: str
) -> Outcome:
    """Set the oversold level's on_hand to a counted value (the listings follow)."""
    mutation = stock_set(
        product=conflict.product,
        warehouse=level.warehouse,
        quantity=value,
        origin=_origin(conflict, actor, f"counted {value}"),
        idempotency_key=f"conflict:{conflict.pk}",
    )
    movement = mutation.movements[0]
    return Outcome(
        applied=S.SET_VALUE,
        value=value,
        movements=[movement.pk],
        warehouse=level.warehouse.code,
        delta=movement.on_hand_delta,
    )


def _listing_repush(conflict: Conflict) -> None:
    """Record what the channel shows as the listing's last pushed quantity and mark it dirty:
    the push then sends the desired quantity whenever it differs from that.

    A push in flight meanwhile settles with what it sent (and leaves the new mark), so the
    record stays true either way.
    """
    theirs = conflict.theirs
    ChannelListing.objects.filter(pk=conflict.listing_id).update(
        last_pushed_quantity=None if theirs is None else int(theirs),
        updated_at=timezone.now(),
    )
    listings_mark_dirty(listing_ids=[conflict.listing_id])


def _product_repush(conflict: Conflict) -> None:
    """Send every listing of the product its quantity again, changed or not."""
    if conflict.product_id is None:
        return
    ids = list(
        ChannelListing.objects.filter(product_id=conflict.product_id).values_list("pk", flat=True)
    )
    ChannelListing.objects.filter(pk__in=ids).update(
        last_pushed_quantity=None, updated_at=timezone.now()
    )
    listings_mark_dirty(listing_ids=ids)
