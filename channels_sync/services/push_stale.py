"""A push the channel refused as stale: its compare-and-set saw another quantity than ours.

Channels with compare-and-set (Shopify's `changeFromQuantity`) refuse to overwrite a
quantity that is not the one we expected; the adapter answers `ItemResult(stale=True,
observed=<read back>)`. That is no failure of the push (no attempt is used up, nothing is
dead-lettered) but news about the channel, handled here:

- observed = the desired quantity: our own earlier write landed after all (a call that
  timed out); the push records it as pushed, no conflict (see `push._items_done`).
- we had a confirmed push (`last_pushed_quantity` before the send): the channel moved away
  from it behind our back. The refused call changed nothing, so the last confirmed push is
  restored, the dirty mark is cleared where no stock change came meanwhile, and the
  observation goes through the reconciliation's own comparison (`listing_observe`, source
  `push`): it records `last_observed_quantity/at` and opens (or updates) the listing's
  `stock_mismatch` conflict (ours: the last confirmed push; theirs: what the channel shows),
  whose channel policy then acts exactly as after a reconciliation. The listing is left in
  the state a reconciliation leaves it, because every strategy that moves our stock
  (`use_theirs`, `minimum`, `set_value`, ...) refuses a listing with a push pending
  (`conflict_stale`). So: `use_ours` records theirs as the last pushed quantity and marks
  the listing dirty, and the next push sends ours with `changeFromQuantity` = theirs;
  `use_theirs` moves our stock and the listing then agrees; under `manual` the conflict
  waits for a person and the push sends nothing for the listing meanwhile (a later stock
  change marks it dirty: that push tries once more with the last confirmed figure, is
  refused as stale again and refreshes the conflict).
- no confirmed push (the expectation came from a read-back, or the listing was never
  pushed): nothing of ours to compare with (as the reconciliation: recorded, not
  compared). The observation is recorded and the listing stays dirty: the next push uses
  it as `changeFromQuantity`.
- observed unknown (the read-back failed): the listing stays dirty and tries again.

Loop guard: `push_stale_streak` counts stale refusals in a row (a confirmed push resets
it). From the second one the listing backs off like a retry (`next_push_at`, exponential
with jitter from `CHANNEL_PUSH_RETRY_BASE_SECONDS` up to `CHANNEL_PUSH_RETRY_CAP_SECONDS`),
so a listing the channel keeps moving (a flash sale, another app writing) never hammers it.
"""

from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_sync.models import ChannelListing, Conflict
from channels_sync.services.reconcile import ListingObservation, listing_observe
from core.task_base import backoff_seconds

logger = structlog.get_logger(__name__)

UNREAD = "unread"
RECORDED = "recorded"
GONE = "gone"


def listing_push_stale(
    *,
    listing_id: int,
    version: int,
    last_pushed: int | None,
    observed: int | None,
    read_started: datetime,
    error: str = "",
) -> str:
    """Handle one stale refusal (see the module); return what came of it: `unread`,
    `recorded`, `gone`, or the `listing_observe` outcome (`mismatch` with a conflict,
    `match`, `skipped`, `stale`).

    `version` is the `dirty_version` the push planned with, `last_pushed` the listing's
    last confirmed push before the send, `read_started` when the refused call began.
    Locks the listing's row; the conflict opens in the same transaction and its policy is
    queued after the commit (`conflict_open`). Must not run inside a caller's transaction
    that outlives the push's call (it commits what it records).
    """
    now = timezone.now()
    with transaction.atomic():
        row = (
            ChannelListing.objects.select_for_update()
            .filter(pk=listing_id)
            .values("push_stale_streak")
            .first()
        )
        if row is None:
            return GONE
        streak = min(row["push_stale_streak"] + 1, 32767)
        hold = None
        if streak >= 2:
            delay = backoff_seconds(
                streak - 2,
                base=settings.CHANNEL_PUSH_RETRY_BASE_SECONDS,
                cap=settings.CHANNEL_PUSH_RETRY_CAP_SECONDS,
            )
            hold = now + timedelta(seconds=delay)
        fields = {
            "push_stale_streak": streak,
            "next_push_at": hold,
            "last_error": f"stale: {error}"[:1000],
            "updated_at": now,
        }
        if last_pushed is not None:
            # The refused call changed nothing: our last confirmed push still stands.
            fields["last_pushed_quantity"] = last_pushed
        ChannelListing.objects.filter(pk=listing_id).update(**fields)
        if observed is None:
            outcome = UNREAD
        elif last_pushed is None:
            ChannelListing.objects.filter(pk=listing_id).update(
                last_observed_quantity=observed, last_observed_at=now
            )
            outcome = RECORDED
        else:
            # Hand the listing to the comparison in the state a reconciliation sees it.
            ChannelListing.objects.filter(pk=listing_id, dirty_version=version).update(
                dirty=False, dirty_since=None
            )
            result: ListingObservation = listing_observe(
                listing=listing_id,
                quantity=observed,
                observed_at=now,
                source=Conflict.Source.PUSH,
                read_started=read_started,
                version=version,
            )
            outcome = result.outcome
    logger.info(
        "push.stale",
        listing_id=listing_id,
        ours=last_pushed,
        theirs=observed,
        streak=streak,
        hold_until=hold.isoformat() if hold else None,
        outcome=outcome,
    )
    return outcome
