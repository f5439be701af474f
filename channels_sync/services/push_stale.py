"""Compare-and-set: a push the channel refused as stale, and the increases held meanwhile.

Channels with compare-and-set (`Adapter.compare_and_set`, Shopify's `changeFromQuantity`)
are sent, with each quantity, what the listing's channel shows as far as we know
(`ChannelListing.channel_quantity`: the last confirmed push or a later observation, never
cleared by a failed call). They refuse to overwrite a quantity that is not that one; the
adapter answers `ItemResult(stale=True, observed=<read back>)`. That is no failure of the
push (no attempt is used up, nothing is dead-lettered) but news about the channel, handled
here (`listing_push_stale`):

- observed = the desired quantity: our own earlier write landed after all (a call that
  timed out); the push records it as pushed, no conflict (see `push._items_done`).
- otherwise the observation is recorded (`channel_quantity`, `last_observed_quantity/at`)
  and the listing stays dirty: the stock change it carries is still to be shown. A
  refusal never moves our stock. When the listing had a confirmed push before, the
  listing's `stock_mismatch` conflict opens (or is refreshed), source `push`, with true
  figures: ours = the quantity the push tried to show (every stock change recorded here,
  our own sales on this channel included), theirs = what the channel shows. So staff see
  it, and the channel's policy acts on it: `use_ours` (and a strategy coming down to it,
  such as `minimum` when theirs is higher) marks the listing to be sent again; strategies
  that move our stock are refused with `conflict_stale` while the listing is dirty (a
  pending change would be counted twice); the channel reconciliation, which compares only
  clean listings after its settle time, is what resolves by them. A listing never pushed
  has nothing of ours to compare: recorded, no conflict (as the reconciliation does).
- observed unknown (the read-back failed): the listing stays dirty and tries again.

What the next push sends (`listings_held`): the desired quantity, expecting the observed
one, when it is not above it (lowering is always safe: nothing is sold that we do not
have). An increase of a listing whose `stock_mismatch` conflict is open is held (not sent,
no attempt used, the listing stays dirty) until the conflict is resolved, unless the
channel's policy is `use_ours`; then it is sent, expecting the observed quantity.

Loop guard: `push_stale_streak` counts stale refusals in a row (a confirmed push resets
it). From the second one the listing backs off like a retry (`next_push_at`, exponential
with jitter from `CHANNEL_PUSH_RETRY_BASE_SECONDS` up to `CHANNEL_PUSH_RETRY_CAP_SECONDS`),
so a listing the channel keeps moving (a flash sale, another app writing) never hammers it.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels_sync.models import Channel, ChannelListing, Conflict, ConflictPolicy
from channels_sync.selectors import PlannedListing
from channels_sync.services.conflicts import conflict_open
from channels_sync.services.reconcile import observation_fields
from core.task_base import backoff_seconds

logger = structlog.get_logger(__name__)

UNREAD = "unread"
RECORDED = "recorded"
MISMATCH = "mismatch"
GONE = "gone"


def listing_push_stale(
    *,
    listing_id: int,
    desired: int,
    observed: int | None,
    read_started: datetime,
    error: str = "",
) -> str:
    """Handle one stale refusal (see the module); return what came of it: `unread`,
    `recorded` (no confirmed push to compare with), `mismatch` (the conflict opened or
    refreshed) or `gone`.

    `desired` is the quantity the refused call tried to set, `read_started` when the
    refused call began (the read-back came after it). Locks the listing's row, then the
    conflict's (the resolution's order); the conflict's policy is queued after the commit
    (`conflict_open`). Must not run inside a caller's transaction that outlives the push's
    call (it commits what it records).
    """
    now = timezone.now()
    conflict = None
    with transaction.atomic():
        row = (
            ChannelListing.objects.select_for_update()
            .select_related("channel", "channel__vendor", "product")
            .filter(pk=listing_id)
            .first()
        )
        if row is None:
            return GONE
        streak = min(row.push_stale_streak + 1, 32767)
        hold = None
        if streak >= 2:
            delay = backoff_seconds(
                streak - 2,
                base=settings.CHANNEL_PUSH_RETRY_BASE_SECONDS,
                cap=settings.CHANNEL_PUSH_RETRY_CAP_SECONDS,
            )
            hold = now + timedelta(seconds=delay)
        # The change stays pending: still dirty (a listing sent by a full resync becomes so,
        # its version unchanged). `last_pushed_quantity` stays cleared: the channel does not
        # show our last push, so no later plan may take it as shown.
        fields = {
            "dirty": True,
            "dirty_since": Coalesce("dirty_since", Value(now)),
            "push_stale_streak": streak,
            "next_push_at": hold,
            "last_error": f"stale: {error}"[:1000],
            "updated_at": now,
        }
        if observed is not None:
            fields.update(
                observation_fields(row, observed, observed_at=now, read_started=read_started)
            )
        ChannelListing.objects.filter(pk=listing_id).update(**fields)
        if observed is None:
            outcome = UNREAD
        elif row.last_pushed_at is None:
            outcome = RECORDED
        else:
            conflict, _created = conflict_open(
                kind=Conflict.Kind.STOCK_MISMATCH,
                vendor=row.channel.vendor,
                channel=row.channel,
                listing=row,
                product=row.product,
                source=Conflict.Source.PUSH,
                ours=desired,
                theirs=observed,
                ours_at=row.dirty_since,
                theirs_at=now,
                details={
                    "desired_quantity": desired,
                    "expected": row.channel_quantity,
                    "keys": {
                        "item": row.external_item_id,
                        "variant": row.external_variant_id,
                        "sku": row.external_sku,
                        "location": row.external_location_id,
                    },
                },
            )
            outcome = MISMATCH
    logger.info(
        "push.stale",
        listing_id=listing_id,
        ours=desired,
        theirs=observed,
        streak=streak,
        hold_until=hold.isoformat() if hold else None,
        outcome=outcome,
        conflict_id=conflict.pk if conflict is not None else None,
    )
    return outcome


def listings_held(channel: Channel, items: Sequence[PlannedListing]) -> set[int]:
    """The planned listings whose send waits for their stock conflict (see the module).

    An increase (the desired quantity above what the channel shows as far as we know, or
    that figure unknown) of a listing with an open `stock_mismatch` conflict is held,
    unless the channel's policy is `use_ours`. A lowering is never held. One query for the
    page.
    """
    if channel.conflict_policy == ConflictPolicy.USE_OURS:
        return set()
    rising = [
        item.id
        for item in items
        if item.quantity > 0
        and (item.row["channel_quantity"] is None or item.quantity > item.row["channel_quantity"])
    ]
    if not rising:
        return set()
    held = set(
        Conflict.objects.filter(
            kind=Conflict.Kind.STOCK_MISMATCH,
            status=Conflict.Status.OPEN,
            listing_id__in=rising,
        ).values_list("listing_id", flat=True)
    )
    if held:
        logger.info(
            "push.held", channel_id=channel.pk, listing_ids=sorted(held)[:50], count=len(held)
        )
    return held
