"""Compare-and-set: a push the channel refused as stale, and the conflict it leaves.

Channels with compare-and-set (`Adapter.compare_and_set`, Shopify's `changeFromQuantity`)
are sent, with each quantity, what the listing's channel shows as far as we know
(`ChannelListing.channel_quantity`: the last confirmed push or a later observation, never
cleared by a failed call). They refuse to overwrite a quantity that is not that one; the
adapter answers `ItemResult(stale=True, observed=<read back>)`. That is no failure of the
push (no attempt is used up, nothing is dead-lettered) but news about the channel, handled
here (`listing_push_stale`):

- observed = the desired quantity: our own earlier write landed after all (a call that
  timed out); the push records it as pushed, no conflict (see `push._items_done`).
- observed = a quantity this listing was sent in a call not confirmed since its last
  confirmed push (`own_write_unconfirmed`): that write of ours landed after all (a call
  that timed out), and our stock moved since. Recorded as what the channel shows, no
  conflict, no stale streak; the push sends the desired quantity again at once, expecting
  it (no attempt used).
- otherwise the observation is recorded (`channel_quantity`, `last_observed_quantity/at`)
  and the listing stays dirty: the stock change it carries is still to be shown. A
  refusal never moves our stock. When the listing had a confirmed push before, the
  listing's `stock_mismatch` conflict opens (or is refreshed), source `push`, with true
  figures: ours = the quantity the push tried to show (every stock change recorded here,
  our own sales on this channel included), theirs = what the channel shows. A listing
  never pushed has nothing of ours to compare: recorded, no conflict (as the
  reconciliation does).
- observed unknown (the read-back failed): the listing stays dirty and tries again.

Then the push plans the listing again and sends the desired quantity expecting the
observed one: our figure goes out, and the conflict stays open for staff. Once a quantity
lands, the listing's open `stock_mismatch` conflicts take it as ours
(`conflicts_ours_landed`): the listing is clean and its last pushed quantity is ours, so
every strategy applies (`use_theirs` moves our stock to the channel's figure, and the push
sends it), the channel's policy is queued again, and the channel reconciliation compares
the listing as usual. While the listing is dirty, strategies that move our stock are
refused with `conflict_stale` (a pending change would be counted twice).

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

from channels_sync.models import Channel, ChannelListing, Conflict, PushAttempt
from channels_sync.selectors import PlannedListing
from channels_sync.services.conflicts import conflict_open
from channels_sync.services.reconcile import observation_fields
from core.task_base import backoff_seconds
from inventory.services.bulk import is_postgresql

logger = structlog.get_logger(__name__)

UNREAD = "unread"
RECORDED = "recorded"
MISMATCH = "mismatch"
OWN_WRITE = "own_write"
GONE = "gone"
# How many of a listing's unconfirmed calls are searched for an observed quantity.
OWN_WRITES_SEARCHED = 50
UNCONFIRMED = (
    PushAttempt.Outcome.SENDING,
    PushAttempt.Outcome.RETRYABLE,
    PushAttempt.Outcome.INTERRUPTED,
    PushAttempt.Outcome.THROTTLED,
)


def listing_push_stale(
    *,
    listing_id: int,
    desired: int,
    observed: int | None,
    read_started: datetime,
    error: str = "",
) -> str:
    """Handle one stale refusal (see the module); return what came of it: `unread`,
    `own_write` (the observed quantity is one we sent in an unconfirmed call: send again at
    once), `recorded` (no confirmed push to compare with), `mismatch` (the conflict opened
    or refreshed) or `gone`.

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
        own = observed is not None and own_write_unconfirmed(row, observed)
        # Our own late write is no refusal by someone else: no streak, no backoff.
        streak = row.push_stale_streak if own else min(row.push_stale_streak + 1, 32767)
        hold = None
        if streak >= 2 and not own:
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
            "last_error": "" if own else f"stale: {error}"[:1000],
            "updated_at": now,
        }
        if observed is not None:
            fields.update(
                observation_fields(row, observed, observed_at=now, read_started=read_started)
            )
        ChannelListing.objects.filter(pk=listing_id).update(**fields)
        if observed is None:
            outcome = UNREAD
        elif own:
            outcome = OWN_WRITE
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


def own_write_unconfirmed(row: ChannelListing, observed: int) -> bool:
    """Whether `observed` is a quantity this listing was sent in a call of its channel not
    confirmed since its last confirmed push (outcome sending, retryable, interrupted or
    throttled; its last `OWN_WRITES_SEARCHED` such calls): our own write, landed late."""
    calls = PushAttempt.objects.filter(channel_id=row.channel_id, outcome__in=UNCONFIRMED)
    if row.last_pushed_at is not None:
        calls = calls.filter(created_at__gt=row.last_pushed_at)
    if is_postgresql():
        calls = calls.filter(items__contains=[{"listing": row.pk}])
    for items in calls.order_by("-id").values_list("items", flat=True)[:OWN_WRITES_SEARCHED]:
        for entry in items if isinstance(items, list) else []:
            if (
                isinstance(entry, dict)
                and entry.get("listing") == row.pk
                and entry.get("quantity") == observed
            ):
                return True
    return False


def conflicts_ours_landed(channel: Channel, items: Sequence[PlannedListing]) -> int:
    """After a confirmed push: the open `stock_mismatch` conflicts of these listings take
    the quantity that landed as ours (see the module); return how many changed.

    One query for the call's listings; `conflict_open` refreshes each one whose ours differs
    (an `updated` event; the channel's policy is queued again after the commit, the listing
    being clean now). Runs after the push's own transaction.
    """
    landed = {item.id: item.quantity for item in items}
    if not landed:
        return 0
    changed = 0
    open_conflicts = (
        Conflict.objects.filter(
            kind=Conflict.Kind.STOCK_MISMATCH,
            status=Conflict.Status.OPEN,
            listing_id__in=list(landed),
        )
        .select_related("listing", "product")
        .order_by("pk")
    )
    for conflict in open_conflicts:
        quantity = landed[conflict.listing_id]
        if conflict.ours is not None and conflict.ours == quantity:
            continue
        conflict_open(
            kind=Conflict.Kind.STOCK_MISMATCH,
            vendor=channel.vendor,
            channel=channel,
            listing=conflict.listing,
            product=conflict.product,
            source=conflict.source,
            ours=quantity,
            theirs=conflict.theirs,
            ours_at=timezone.now(),
            theirs_at=conflict.theirs_at,
            details={"landed_quantity": quantity},
        )
        changed += 1
    if changed:
        logger.info("push.conflicts_ours_landed", channel_id=channel.pk, count=changed)
    return changed
