"""Settling conflicts: one strategy per resolution, by a person or by the channel's policy.

The rules of each strategy live in `conflict_strategies`; this module runs them under the
locks. Strategies for a `stock_mismatch` (ours: what we last pushed, or what a push
refused as stale tried to show; theirs: what the channel shows):

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
  Resolved value: the quantity the push will send after the move.
- `minimum`: `use_theirs` when theirs is below ours, else `use_ours`.
- `set_value` (a value >= 0): our stock moves by (value - ours) as for `use_theirs`, then
  the push sends the new desired quantity (the resolved value).
- `last_write_wins`: `use_theirs` when the channel's figure is newer (`theirs_at` after
  `ours_at`; a missing time counts as older), else `use_ours` (ties go to ours). An
  observation is always newer than the push it is compared with, so as a channel's policy
  this is `use_theirs` under another name.
- `source_priority`: `use_theirs` when the conflict's channel comes first (lowest
  `priority`, then id) among the vendor's active channels listing the product: the
  highest-priority channel is the source of truth; else `use_ours`.
- `ignore`: status `ignored`; nothing changes.

Moving our stock (what `use_theirs` and `set_value` come down to) is refused, and nothing
changes, when it would be wrong (`conflict_strategies.stock_move_check`): 409
`erp_managed_stock` for a vendor whose stock comes from its ERP (the ERP would undo it);
409 `strategy_not_applicable` when the listing's allocation rule is not plain `all` (no
buffer, maximum shown or zero-below), since theirs - ours is then no stock difference; 409
`conflict_stale` when the listing moved since the conflict was seen (dirty, a push pending,
or a last pushed quantity other than ours): the old figures would count a sale applied
since a second time. `use_ours` and `ignore` are never refused so.

For an `oversell` only `use_ours` (every listing of the product is sent its quantity
again), `set_value` (a stock count at the sold lines' warehouse: `stock_set`; refused when
the oversold lines took stock from several warehouses, or for an ERP-fed vendor) and
`ignore` apply; for a `duplicate_order` only `use_ours` (both orders stay as they are) and
`ignore`. Anything else: 409 `strategy_not_applicable`.

A resolution locks, in this order, the stock levels it may change (none unless it moves
stock), the product's listings and the conflict's row: the order the order services and
the reconciliation take them in, so none waits in a cycle. The checks are made again on
the locked rows (a listing deleted meanwhile answers `strategy_not_applicable`; a conflict
whose figures changed so that the strategy now comes down to something else answers
`conflict_stale`). The movement, the conflict's new status and its `ConflictEvent` commit
together; the push is queued after the commit (the dirty marks). A conflict no longer open
answers 409 `conflict_not_open`: of two resolutions at once, the second finds it resolved.
"""

from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from channels_sync.errors import ConflictNotOpen, ConflictStale
from channels_sync.models import (
    ChannelListing,
    Conflict,
    ConflictEvent,
    ConflictPolicy,
    ConflictStrategy,
)
from channels_sync.selectors_conflicts import conflict_get
from channels_sync.services.conflict_strategies import (
    level_pairs,
    stock_move_check,
    strategy_applied,
    strategy_apply,
    strategy_check,
)
from channels_sync.services.conflicts import SYSTEM_ACTOR, conflict_event
from channels_sync.services.reconcile_guard import auto_resolve_deferred
from core.errors import DomainError
from inventory.locks import stock_levels_lock

logger = structlog.get_logger(__name__)

S = ConflictStrategy
K = Conflict.Kind


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
    `conflict_stale`, `erp_managed_stock`, and the stock services' refusals
    (`insufficient_stock`, `no_channel_warehouse`, ...), which leave the conflict open and
    change nothing. Idempotent in effect: a conflict is resolved once (the row lock and the
    status check); its stock movement is also keyed `conflict:<id>`. Queues the push after
    the commit.
    """
    conflict = conflict_get(conflict_id=conflict_id)
    value = strategy_check(conflict, strategy, value)
    if conflict.status != Conflict.Status.OPEN:
        raise _not_open(conflict)
    # Decided before the locks only to know which levels to lock; decided again under them.
    applied = strategy_applied(conflict, strategy)
    pairs = level_pairs(conflict, applied)
    with transaction.atomic():
        locked_levels = stock_levels_lock(pairs) if pairs else {}
        levels = [locked_levels[(p.pk, w.pk)] for p, w in pairs]
        listings: dict[int, dict] = {}
        if strategy != S.IGNORE and conflict.product_id is not None:
            listings = {
                row["pk"]: row
                for row in ChannelListing.objects.select_for_update()
                .filter(product_id=conflict.product_id)
                .order_by("pk")
                .values("pk", "dirty", "last_pushed_quantity")
            }
        locked = (
            Conflict.objects.select_for_update(of=("self",))
            .select_related("channel", "listing", "product")
            .get(pk=conflict.pk)
        )
        if locked.status != Conflict.Status.OPEN:
            raise _not_open(locked)
        strategy_check(locked, strategy, value)  # its listing may be gone by now
        if strategy_applied(locked, strategy) != applied:
            raise ConflictStale(
                "The conflict's figures changed while it was being resolved; try again.",
                details={"strategy": strategy, "ours": str(locked.ours)},
            )
        stock_move_check(locked, strategy, applied, listing_state=listings.get(locked.listing_id))
        outcome = strategy_apply(locked, applied, value, levels=levels, actor=actor)
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
