"""Conflicts between our figures and a channel's: opening them (settling: `conflict_resolution`).

A detector (the channel reconciliation, a webhook stock report, an order line sold short, a
second order with the same marketplace id) calls `conflict_open`; a conflict already open
for the same (kind, listing) (or, about no listing, (kind, vendor, reference)) is updated
instead, so a mismatch seen again never opens a second one.

What the figures mean, by kind:

- `stock_mismatch`: `ours` is what we last pushed (the quantity we meant the channel to
  show), or, for one a push refused as stale opened (source `push`), the quantity that
  push tried to show (every stock change recorded here included); `theirs` what the
  channel reports; `ours_at` / `theirs_at` are when each was written (last write wins
  compares them).
- `oversell`: `ours` is the level's available quantity after the sale (negative), `theirs`
  the units sold past zero; `details` names the orders and their lines' warehouses
  (`orders`, `warehouse_ids`), and the latest line, its warehouse and SKU.
- `duplicate_order`: no figures; `reference` is the marketplace order id and `details`
  names the orders and channels that share it.

After the commit, an open `stock_mismatch` of a channel whose policy is not `manual` is
resolved by the policy's strategy (the `channels_sync.conflict_auto_resolve` task). The
other kinds always wait for a person. A `stock_mismatch` whose listing is seen to agree with
what we pushed again is closed by the reconciliation (`conflict_close_agreed`).

Locks: a conflict row is taken after any stock level and listing rows the caller holds
(the order services open conflicts after their stock and dirty marks, and a resolution
locks levels, then listings, then the conflict), so the three never wait in a cycle.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_sync.models import (
    Channel,
    ChannelListing,
    Conflict,
    ConflictEvent,
    ConflictPolicy,
)
from channels_sync.tasks import conflict_auto_resolve
from core.correlation import get_correlation_id
from inventory.models import Product, Vendor

logger = structlog.get_logger(__name__)

SYSTEM_ACTOR = "system"
AGREES_AGAIN = "the channel agrees again"


def conflict_event(conflict: Conflict, action: str, *, actor: str, **fields: Any) -> ConflictEvent:
    """Append a line to the conflict's history (in the caller's transaction)."""
    return ConflictEvent.objects.create(
        conflict=conflict,
        action=action,
        actor=actor[:150],
        correlation_id=get_correlation_id() or "",
        **fields,
    )


def details_merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The details of a conflict seen again: new keys replace old ones, lists are joined.

    So an oversell conflict keeps every order that oversold the listing while it is open.
    """
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, list) and isinstance(old.get(key), list):
            merged[key] = list(dict.fromkeys([*old[key], *value]))
        else:
            merged[key] = value
    return merged


def conflict_open(
    *,
    kind: str,
    vendor: Vendor,
    source: str,
    ours: Decimal | int | None,
    theirs: Decimal | int | None,
    channel: Channel | None = None,
    listing: ChannelListing | None = None,
    product: Product | None = None,
    reference: str = "",
    ours_at: datetime | None = None,
    theirs_at: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[Conflict, bool]:
    """Open a conflict, or update the one already open for the same subject.

    Returns `(conflict, created)`. Runs in the caller's transaction when there is one (in a
    savepoint of its own). Two detectors opening the same conflict at once are settled by
    the unique constraint: the loser waits for the winner's commit, then updates its row.
    An update with other figures writes an `updated` event; the details are merged
    (`details_merge`). Queues the policy's automatic resolution after the commit (see
    `_auto_resolve_due`).
    """
    ours = None if ours is None else Decimal(ours)
    theirs = None if theirs is None else Decimal(theirs)
    lookup: dict[str, Any] = {"kind": kind, "status": Conflict.Status.OPEN}
    if listing is not None:
        lookup["listing"] = listing
    else:
        lookup.update(listing__isnull=True, vendor=vendor, reference=reference[:200])
    values = {
        "ours": ours,
        "theirs": theirs,
        "ours_at": ours_at,
        "theirs_at": theirs_at,
        "source": source,
    }
    for _ in range(2):
        try:
            with transaction.atomic():
                conflict = Conflict.objects.select_for_update().filter(**lookup).first()
                if conflict is not None:
                    changed = (conflict.ours, conflict.theirs) != (ours, theirs)
                    for name, value in values.items():
                        setattr(conflict, name, value)
                    if reference:
                        conflict.reference = reference[:200]
                    conflict.details = details_merge(conflict.details or {}, details or {})
                    conflict.save()
                    if changed:
                        conflict_event(
                            conflict,
                            ConflictEvent.Action.UPDATED,
                            actor=SYSTEM_ACTOR,
                            ours=ours,
                            theirs=theirs,
                        )
                    _auto_resolve_due(conflict, changed=changed)
                    return conflict, False
                conflict = Conflict.objects.create(
                    kind=kind,
                    vendor=vendor,
                    channel=channel,
                    listing=listing,
                    product=product or (listing.product if listing is not None else None),
                    reference=reference[:200],
                    detected_at=timezone.now(),
                    details=details or {},
                    **values,
                )
                conflict_event(
                    conflict,
                    ConflictEvent.Action.OPENED,
                    actor=SYSTEM_ACTOR,
                    ours=ours,
                    theirs=theirs,
                )
                _auto_resolve_due(conflict, changed=True)
        except IntegrityError:
            continue  # opened meanwhile by another detector: update that one
        logger.info(
            "conflict.opened",
            conflict_id=conflict.pk,
            kind=kind,
            channel_id=channel.pk if channel else None,
            listing_id=listing.pk if listing else None,
            ours=str(ours),
            theirs=str(theirs),
        )
        return conflict, True
    raise RuntimeError(f"could not open a {kind} conflict")


def conflict_close_agreed(*, listing: ChannelListing, quantity: int) -> Conflict | None:
    """Close the listing's open `stock_mismatch` as the channel agrees with us again.

    Called by the reconciliation's comparison under the listing's row lock, when the
    channel shows what we last pushed: the conflict then describes nothing anymore (moving
    stock by its old figures would be wrong), so it is closed: status `auto_resolved`, no
    strategy, resolved value the agreed quantity, actor `system`, note "the channel agrees
    again", and an `auto_resolved` event. Locks the conflict's row after the listing's (the
    resolution's order). Returns the conflict closed, or None if none was open.
    """
    conflict = (
        Conflict.objects.select_for_update()
        .filter(kind=Conflict.Kind.STOCK_MISMATCH, listing=listing, status=Conflict.Status.OPEN)
        .first()
    )
    if conflict is None:
        return None
    conflict.status = Conflict.Status.AUTO_RESOLVED
    conflict.strategy = ""
    conflict.resolved_value = Decimal(quantity)
    conflict.resolved_by = SYSTEM_ACTOR
    conflict.resolved_at = timezone.now()
    conflict.note = AGREES_AGAIN
    conflict.save()
    conflict_event(
        conflict,
        ConflictEvent.Action.AUTO_RESOLVED,
        actor=SYSTEM_ACTOR,
        ours=Decimal(quantity),
        theirs=Decimal(quantity),
        value=Decimal(quantity),
        note=AGREES_AGAIN,
    )
    logger.info(
        "conflict.closed_agreed", conflict_id=conflict.pk, listing_id=listing.pk, quantity=quantity
    )
    return conflict


def _auto_resolve_due(conflict: Conflict, *, changed: bool) -> None:
    """Queue the automatic resolution of a stock mismatch after the commit, when its channel's
    policy is not manual.

    Queued when the conflict opens or its figures change, and when it is seen again with
    the same figures unless the last automatic try failed with them (that would only fail
    again; a person settles it). So a queueing lost with a crashed process is made good by
    the next reconciliation that sees the mismatch.
    """
    if conflict.kind != Conflict.Kind.STOCK_MISMATCH or conflict.channel_id is None:
        return
    policy = (
        Channel.objects.filter(pk=conflict.channel_id)
        .values_list("conflict_policy", flat=True)
        .first()
    )
    if policy in (None, ConflictPolicy.MANUAL):
        return
    if not changed:
        last = conflict.events.order_by("-id").values_list("action", flat=True).first()
        if last == ConflictEvent.Action.FAILED:
            return
    conflict_id = conflict.pk
    transaction.on_commit(lambda: auto_resolve_enqueue(conflict_id), robust=True)


def auto_resolve_enqueue(conflict_id: int) -> bool:
    """Queue `channels_sync.conflict_auto_resolve` for a conflict; False if the queue is down.

    The conflict stays open meanwhile: the next reconciliation that sees it queues it again.
    """
    try:
        conflict_auto_resolve.apply_async(kwargs={"conflict_id": conflict_id})
    except Exception:
        logger.exception("conflict.auto_resolve_enqueue_failed", conflict_id=conflict_id)
        return False
    return True
