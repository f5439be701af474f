"""A late sale is not an edit behind our back: hold the automatic resolution of a stock
mismatch where the channel shows less than we pushed until the channel's orders were polled.

A sale on the marketplace lowers what the channel shows before its order reaches us (a
notification lost or late). Resolved automatically at once, the mismatch would either put
the sold units back on sale (`use_ours`: we push our figure, which does not count the sale)
or count the sale twice (`use_theirs`: our stock moves down, then the order takes it again).
So a conflict with theirs below ours waits ("deferred") until an order poll of the channel
whose listing covered the moment of the observation has applied the orders up to then
(`Channel.orders_cursor` past `theirs_at`: the cursor moves only when a poll's listing
succeeded, unlike `orders_polled_at`, which a failed poll stamps too) and no order the channel
notified or listed before then is still waiting to be applied (`channels_sync.hooks.
orders_pending`: the webhooks app's stored, unprocessed order events). A poll that applied
everything it listed queues the resolution of the channel's deferred conflicts
(`deferred_conflicts_enqueue`).
"""

from datetime import datetime

import structlog

from channels_sync.hooks import orders_pending
from channels_sync.models import Channel, Conflict, ConflictPolicy
from channels_sync.services.conflicts import auto_resolve_enqueue

logger = structlog.get_logger(__name__)


def auto_resolve_deferred(conflict: Conflict) -> bool:
    """Whether the automatic resolution of this stock mismatch must wait for an order poll
    (theirs below ours, and no poll has covered the observation yet)."""
    if conflict.kind != Conflict.Kind.STOCK_MISMATCH or conflict.channel_id is None:
        return False
    if conflict.ours is None or conflict.theirs is None or conflict.theirs >= conflict.ours:
        return False
    cursor = (
        Channel.objects.filter(pk=conflict.channel_id)
        .values_list("orders_cursor", flat=True)
        .first()
    )
    deferred = (
        cursor is None
        or conflict.theirs_at is None
        or cursor <= conflict.theirs_at
        # Listed or notified before the observation, not applied yet (a detail call failing,
        # an apply that raised): the sale may be among them.
        or orders_pending(conflict.channel_id, conflict.theirs_at)
    )
    if deferred:
        logger.info(
            "conflict.auto_resolve_deferred",
            conflict_id=conflict.pk,
            channel_id=conflict.channel_id,
            theirs_at=conflict.theirs_at.isoformat() if conflict.theirs_at else None,
        )
    return deferred


def deferred_conflicts_enqueue(*, channel_id: int, polled_until: datetime) -> list[int]:
    """Queue the automatic resolution of the channel's open stock mismatches that waited for
    an order poll covering them (called after a poll whose listing reached `polled_until`).

    Only under an automatic policy; each resolution checks again (and is safe to run twice).
    Returns the conflict ids queued.
    """
    channel = Channel.objects.filter(pk=channel_id).only("conflict_policy").first()
    if channel is None or channel.conflict_policy == ConflictPolicy.MANUAL:
        return []
    ids = [
        conflict_id
        for conflict_id, ours, theirs in Conflict.objects.filter(
            channel_id=channel_id,
            kind=Conflict.Kind.STOCK_MISMATCH,
            status=Conflict.Status.OPEN,
            theirs_at__lt=polled_until,
        )
        .order_by("pk")
        .values_list("pk", "ours", "theirs")
        if ours is not None and theirs is not None and theirs < ours
    ]
    queued = [conflict_id for conflict_id in ids if auto_resolve_enqueue(conflict_id)]
    if queued:
        logger.info("conflict.deferred_queued", channel_id=channel_id, conflict_ids=queued)
    return queued
