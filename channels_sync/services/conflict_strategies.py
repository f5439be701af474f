"""The strategies that settle a conflict: which apply, what each comes down to, what it does.

`conflict_resolution.conflict_resolve` runs them under its locks; this module holds the
rules (see that module for the strategies' contract).
"""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import IntegerField, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_sync.adapters import Adapter, adapter_classes
from channels_sync.allocation import one_for_one, rule_describe
from channels_sync.errors import (
    ConflictStale,
    ErpManagedStock,
    InvalidResolutionValue,
    NoChannelWarehouse,
    StrategyNotApplicable,
)
from channels_sync.models import ChannelListing, Conflict, ConflictStrategy
from channels_sync.selectors import listing_rule
from channels_sync.selectors_conflicts import channel_ranks_first, listing_desired_quantity
from channels_sync.services.dirty import listings_mark_dirty
from core.errors import DomainError
from inventory.errors import InsufficientStock
from inventory.models import Product, StockLevel, Warehouse
from inventory.selectors import vendor_stock_source
from inventory.services.stock import Origin, quantity_clean, stock_adjust, stock_set

S = ConflictStrategy
K = Conflict.Kind

APPLICABLE: dict[str, tuple[str, ...]] = {
    K.STOCK_MISMATCH: tuple(S.values),
    K.OVERSELL: (S.USE_OURS, S.SET_VALUE, S.IGNORE),
    K.DUPLICATE_ORDER: (S.USE_OURS, S.IGNORE),
}
# What a strategy may come down to that moves our stock (`strategy_applied`).
MOVES_STOCK = frozenset({S.USE_THEIRS, S.SET_VALUE})


@dataclass
class Outcome:
    """What a resolution did: the strategy applied in the end, the value, the movements.

    `value` is the resolved value (for a stock mismatch the quantity the channel is to
    show); `target` what our stock was moved towards (theirs, or the value given).
    """

    applied: str
    value: Decimal | None = None
    movements: list[int] = field(default_factory=list)
    warehouse: str = ""
    delta: Decimal | None = None
    target: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "value": _text(self.value),
            "movements": self.movements,
            "warehouse": self.warehouse,
            "delta": _text(self.delta),
            "target": _text(self.target),
        }


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


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


def strategy_applied(conflict: Conflict, strategy: str) -> str:
    """What the strategy comes down to for this conflict: `ignore`, `use_ours`, `use_theirs`
    or `set_value` (only the last two move our stock)."""
    if strategy == S.IGNORE:
        return S.IGNORE
    if conflict.kind == K.DUPLICATE_ORDER:
        return S.USE_OURS  # both orders stand as they are
    if conflict.kind == K.OVERSELL:
        return strategy
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


def stock_move_check(
    conflict: Conflict, strategy: str, applied: str, *, listing_state: dict | None
) -> None:
    """Refuse to move our stock where the move would be wrong (on the locked conflict).

    - `erp_managed_stock`: the vendor's physical stock comes from its ERP, which would undo
      a local correction at its next reconciliation (a stock mismatch or an oversell count);
    - for a stock mismatch, `strategy_not_applicable` when nothing was pushed yet, or when
      the listing's allocation rule does not show the pool unit for unit (a percentage, a
      buffer, a maximum shown, a zero-below or a shared pool: theirs - ours is then no stock
      difference);
    - `conflict_stale` when the listing moved since the conflict was seen (`listing_state`:
      its locked `dirty` and `last_pushed_quantity`): a push pending, or a last pushed
      quantity that is no longer `ours`. Moving by the old figures would count a sale (or a
      receipt) applied since a second time. Another reconciliation refreshes the figures,
      or closes the conflict if the channel agrees.
    """
    if applied not in MOVES_STOCK:
        return
    source = vendor_stock_source(conflict.vendor_id)
    if source:
        raise ErpManagedStock(
            f"This vendor's stock comes from its ERP (through {source}): correct it there, "
            "or use ours.",
            details={"strategy": strategy, "source": source},
        )
    if conflict.kind != K.STOCK_MISMATCH:
        return
    if conflict.ours is None:
        raise StrategyNotApplicable(
            "Nothing was pushed to this listing yet: there is no figure of ours to move from.",
            details={"strategy": strategy},
        )
    rule = listing_rule(conflict.listing)
    if not one_for_one(rule):
        described = rule_describe(rule)
        raise StrategyNotApplicable(
            f"The listing's allocation ({described}) does not show our stock unit for unit, "
            "so the channel's figure says nothing exact about our stock: use ours, or correct "
            "the stock in the inventory console.",
            details={"strategy": strategy, "rule": described},
        )
    state = listing_state or {}
    pushed = state.get("last_pushed_quantity")
    if state.get("dirty") or pushed is None or Decimal(pushed) != conflict.ours:
        raise ConflictStale(
            details={
                "strategy": strategy,
                "ours": str(conflict.ours),
                "last_pushed_quantity": pushed,
                "dirty": bool(state.get("dirty")),
            }
        )


def level_pairs(conflict: Conflict, applied: str) -> list[tuple[Product, Warehouse]]:
    """The (product, warehouse) levels a resolution may change, in preference order: none
    unless it moves our stock (so no empty level is made for nothing)."""
    product = conflict.product
    if product is None or applied not in MOVES_STOCK:
        return []
    if conflict.kind == K.STOCK_MISMATCH:
        return [(product, warehouse) for warehouse in _channel_warehouses(conflict)]
    return [(product, _oversold_warehouse(conflict, product))]


def _channel_warehouses(conflict: Conflict) -> list[Warehouse]:
    """The channel's active warehouses of the product's vendor: the default one first."""
    if conflict.channel_id is None or conflict.product is None:
        return []
    return list(
        Warehouse.objects.filter(
            channels=conflict.channel_id, active=True, vendor_id=conflict.product.vendor_id
        ).order_by("-is_default", "pk")
    )


def _oversold_warehouse(conflict: Conflict, product: Product) -> Warehouse:
    """The one warehouse the oversold lines took their stock from (a count applies to it)."""
    details = conflict.details or {}
    ids = details.get("warehouse_ids") or [details.get("warehouse_id")]
    ids = list(dict.fromkeys(pk for pk in ids if pk is not None))
    warehouses = list(Warehouse.objects.filter(pk__in=ids, vendor_id=product.vendor_id))
    if len(ids) > 1:
        codes = ", ".join(sorted(w.code for w in warehouses)) or "several"
        raise StrategyNotApplicable(
            f"The oversold orders took stock from several warehouses ({codes}): count each "
            "in the inventory console, then resolve with use_ours.",
            details={"strategy": S.SET_VALUE, "warehouse_ids": ids},
        )
    if len(ids) != 1 or not warehouses:
        raise StrategyNotApplicable(
            "The oversold line's warehouse is unknown: count the stock in the inventory "
            "console, then resolve with use_ours.",
            details={"strategy": S.SET_VALUE},
        )
    return warehouses[0]


def strategy_apply(
    conflict: Conflict,
    applied: str,
    value: Decimal | None,
    *,
    levels: list[StockLevel],
    actor: str,
) -> Outcome:
    """Carry out what the strategy came down to, on the locked conflict (checked already)."""
    if applied == S.IGNORE:
        return Outcome(applied=S.IGNORE)
    if conflict.kind == K.DUPLICATE_ORDER:
        return Outcome(applied=S.USE_OURS)
    if conflict.kind == K.OVERSELL:
        if applied == S.USE_OURS:
            _product_repush(conflict)
            return Outcome(applied=S.USE_OURS)
        return _oversell_count(conflict, value, level=levels[0], actor=actor)
    if applied == S.USE_OURS:
        _listing_repush(conflict)
        return Outcome(applied=S.USE_OURS, value=_desired(conflict))
    target = conflict.theirs if applied == S.USE_THEIRS else value
    outcome = _stock_move(conflict, target - conflict.ours, levels=levels, actor=actor)
    outcome.applied, outcome.target = applied, target
    _listing_repush(conflict)
    # What the push will send now that our stock moved (the one-for-one rule makes it the
    # target, unless the pool was below zero or the product's other stock moved too).
    outcome.value = _desired(conflict)
    return outcome


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
        target=value,
    )


def _listing_repush(conflict: Conflict) -> None:
    """Record what the channel shows as the listing's last pushed quantity and mark it dirty:
    the push then sends the desired quantity whenever it differs from that.

    What the channel shows is theirs; on a compare-and-set channel, its `channel_quantity`
    when known (kept by every push and observation there: our quantity may have landed over
    theirs since the conflict was seen). A push in flight meanwhile settles with what it
    sent (and leaves the new mark), so the record stays true either way.
    """
    theirs = None if conflict.theirs is None else int(conflict.theirs)
    shown: Any = theirs
    channel = conflict.channel
    if channel is not None and adapter_classes().get(channel.type, Adapter).compare_and_set:
        shown = Coalesce("channel_quantity", Value(theirs, IntegerField()))
    ChannelListing.objects.filter(pk=conflict.listing_id).update(
        last_pushed_quantity=shown,
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
