"""Conflicts between our figures and a channel's: opening them, and settling them.

A detector (the channel reconciliation, a webhook stock report, an order line sold short, a
second order with the same marketplace id) calls `conflict_open`; a conflict already open
for the same (kind, listing) (or, about no listing, (kind, vendor, reference)) is updated
instead, so a mismatch seen again never opens a second one. After the commit the channel's
policy may resolve it automatically (`conflict_resolve`).
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_sync.models import Channel, ChannelListing, Conflict, ConflictEvent
from core.correlation import get_correlation_id
from inventory.models import Product, Vendor

logger = structlog.get_logger(__name__)

SYSTEM_ACTOR = "system"


def _event(conflict: Conflict, action: str, *, actor: str, **fields: Any) -> ConflictEvent:
    return ConflictEvent.objects.create(
        conflict=conflict,
        action=action,
        actor=actor[:150],
        correlation_id=get_correlation_id() or "",
        **fields,
    )


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

    Returns `(conflict, created)`. Runs in the caller's transaction when there is one. Two
    detectors opening the same conflict at once are settled by the unique constraint: the
    loser updates the winner's row.
    """
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
        "details": details or {},
    }
    for _ in range(2):
        try:
            with transaction.atomic():
                conflict = Conflict.objects.select_for_update().filter(**lookup).first()
                if conflict is not None:
                    changed = (conflict.ours, conflict.theirs) != (ours, theirs)
                    for name, value in values.items():
                        setattr(conflict, name, value)
                    conflict.save()
                    if changed:
                        _event(
                            conflict,
                            ConflictEvent.Action.UPDATED,
                            actor=SYSTEM_ACTOR,
                            ours=ours,
                            theirs=theirs,
                        )
                    return conflict, False
                conflict = Conflict.objects.create(
                    kind=kind,
                    vendor=vendor,
                    channel=channel,
                    listing=listing,
                    product=product or (listing.product if listing is not None else None),
                    reference=reference[:200],
                    detected_at=timezone.now(),
                    **values,
                )
                _event(
                    conflict,
                    ConflictEvent.Action.OPENED,
                    actor=SYSTEM_ACTOR,
                    ours=ours,
                    theirs=theirs,
                )
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
