"""Processing a stored stock report (topic `stock`): Shopee's reserved stock change push,
TikTok's inventory status change. `webhook_event_process` hands a claimed event of that topic
here; it is compared through the channel reconciliation's `listing_observe`."""

import time

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from channels_sync.adapters import AdapterError, ChannelEvent, Outcome, StockReport
from channels_sync.models import Channel, ChannelListing, Conflict
from channels_sync.ratelimit import rate_limit_take
from channels_sync.services.reconcile import ListingObservation, listing_observe
from channels_sync.services.tokens import channel_token_refresh
from core.cache import CACHE_ERRORS, cache_degraded
from webhooks.models import WebhookEvent
from webhooks.services.events import (
    ProcessingRetry,
    ProcessingThrottled,
    _finish,
    webhook_event_fail,
)

logger = structlog.get_logger(__name__)

# A stock read-back waits in place at most this long for a token of the channel's bucket;
# beyond, the event is retried later (`ProcessingThrottled`).
STOCK_READ_INLINE_WAIT_SECONDS = 5.0


def stock_report_process(
    event: WebhookEvent, channel: Channel, adapter, parsed: ChannelEvent
) -> str:
    """Feed a stock report to the channel reconciliation's comparison (`listing_observe`).

    Each reported listing of the channel is observed with source `webhook`: at the reported
    quantity when the report carries one for what the listing sells (a listing kept per
    warehouse is not comparable with a report over all warehouses; nor is a report not
    later than our last push; a report is dated at its own time, at the latest when it was
    received), else as read back now through `fetch_stock` (the reading's
    start and the listing's version taken first, as a reconciliation run takes them). A
    report naming no listing of the channel is ignored. Idempotent: an observation older
    than the one kept is not applied again, and a conflict seen again is updated.
    """
    reported = [(report, _listings_of(channel, adapter, report)) for report in parsed.stock]
    reported = [(report, listings) for report, listings in reported if listings]
    if not reported:
        _finish(event, WebhookEvent.Status.IGNORED)
        return "ignored"
    # The report's own time, never later than its arrival: a marketplace clock ahead of ours
    # would otherwise date the observation in our future, and every reading until then
    # (a reconciliation run, the next report) would be refused as older than it.
    observed_at = event.received_at
    if parsed.updated_at is not None:
        observed_at = min(parsed.updated_at, event.received_at)
    to_read: list[ChannelListing] = []
    failures: list[str] = []
    try:
        for report, listings in reported:
            for listing in listings:
                names_location = any(
                    adapter.key_columns.get(name) == "external_location_id" for name in report.keys
                )
                if report.quantity is not None and (
                    names_location or not listing.external_location_id
                ):
                    result = _observe(
                        failures,
                        listing=listing,
                        quantity=report.quantity,
                        observed_at=observed_at,
                        source=Conflict.Source.WEBHOOK,
                    )
                    if result is not None and result.reason == "pushed_since":
                        # Reports carry whole seconds: one from the second of our last push
                        # (or older) cannot tell which came first. A reading now can.
                        to_read.append(listing)
                else:
                    to_read.append(listing)
        if to_read:
            _stock_read(channel, adapter, to_read, failures)
    except (ProcessingRetry, ProcessingThrottled, SoftTimeLimitExceeded):
        raise
    except OperationalError as exc:
        raise ProcessingRetry(f"database: {exc}") from exc
    except Exception as exc:
        webhook_event_fail(event_id=event.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(event, WebhookEvent.Status.PROCESSED, error="; ".join(failures))
    return "processed"


def _observe(failures: list[str], **observation) -> ListingObservation | None:
    """`listing_observe` for one listing of a report. A failure of that listing's own (not
    the database's: that retries the event) is logged and kept on the event, never failing
    the others nor the event for good: a report is one observation among many."""
    try:
        return listing_observe(**observation)
    except (OperationalError, SoftTimeLimitExceeded):
        raise
    except Exception as exc:
        listing = observation["listing"]
        listing_id = listing.pk if isinstance(listing, ChannelListing) else listing
        logger.exception("webhook.stock_observe_failed", listing_id=listing_id)
        failures.append(f"listing {listing_id}: {type(exc).__name__}: {exc}"[:300])
        return None


def _listings_of(channel: Channel, adapter, report: StockReport) -> list[ChannelListing]:
    """The channel's listings (not excluded) a report's keys name."""
    try:
        keys = adapter.keys_clean(report.keys)
    except ValueError:
        return []
    columns = adapter.keys_to_columns(keys)
    lookup = {
        column: value
        for column, value in columns.items()
        if column in ("external_item_id", "external_variant_id") or value
    }
    return list(
        ChannelListing.objects.filter(channel=channel, **lookup)
        .exclude(status=ChannelListing.Status.EXCLUDED)
        .order_by("pk")
    )


def _stock_read(
    channel: Channel, adapter, listings: list[ChannelListing], failures: list[str]
) -> None:
    """Read these listings' stock back now and observe it (token refreshed first).

    Each read call takes a token from the channel's bucket first (the push's and the
    reconciliation's: `read_batches` makes one group per call). A bucket empty for longer than
    `STOCK_READ_INLINE_WAIT_SECONDS`, or a throttled answer, raises `ProcessingThrottled`:
    the event waits and tries again without using up an attempt. What was observed before
    stays observed (a later observation of the same listing simply replaces it).
    """
    keys = {listing.pk: adapter.keys_from_listing(listing) for listing in listings}
    versions = dict(
        ChannelListing.objects.filter(pk__in=list(keys)).values_list("id", "dirty_version")
    )
    read_started = timezone.now()
    if not channel_token_refresh(channel=channel, adapter=adapter):
        raise ProcessingRetry("the channel needs re-authorisation")
    by_keys = {tuple(sorted(k.items())): pk for pk, k in keys.items()}
    for group in adapter.read_batches(list(keys.values()), settings.CHANNEL_RECONCILE_BATCH):
        for item in _stock_read_call(channel, adapter, group):
            listing_id = by_keys.get(tuple(sorted(item.keys.items())))
            if listing_id is not None:
                _observe(
                    failures,
                    listing=listing_id,
                    quantity=item.quantity,
                    observed_at=timezone.now(),
                    source=Conflict.Source.WEBHOOK,
                    read_started=read_started,
                    version=versions.get(listing_id),
                )


def _stock_read_call(channel: Channel, adapter, group: list[dict[str, str]]) -> list:
    """One read call under the channel's rate limit (an expired token refreshed once)."""
    _rate_token(channel, adapter)
    try:
        try:
            return adapter.fetch_stock(group)
        except AdapterError as exc:
            if exc.outcome != Outcome.AUTH:
                raise
            if not channel_token_refresh(channel=channel, adapter=adapter, force=True):
                raise ProcessingRetry("the channel needs re-authorisation") from exc
            _rate_token(channel, adapter)
            return adapter.fetch_stock(group)
    except AdapterError as exc:
        if exc.outcome == Outcome.THROTTLED:
            wait = exc.retry_after
            raise ProcessingThrottled(
                f"the marketplace throttled the stock read: {exc}",
                countdown=settings.CHANNEL_THROTTLE_WAIT_SECONDS if wait is None else wait,
            ) from exc
        raise ProcessingRetry(f"{exc.outcome}: {exc}") from exc


# While the cache (the rate limit's bucket) is down, a stock read waits this long.
CACHE_DOWN_RETRY_SECONDS = 30.0


def _rate_token(channel: Channel, adapter) -> None:
    """Take a token from the channel's bucket, waiting in place a little at most."""
    cls = type(adapter)
    rate = channel.rate_limit_per_second or cls.default_rate_per_second
    burst = channel.rate_limit_burst or cls.default_burst
    waited = 0.0
    while True:
        try:
            wait = rate_limit_take(f"channel:{channel.pk}", rate=rate, burst=burst)
        except CACHE_ERRORS as exc:
            # The bucket lives in Redis: while it is unreachable the read waits as if
            # throttled (no attempt used), rather than failing the event for good.
            cache_degraded("stock_report_rate_limit", exc)
            raise ProcessingThrottled(
                "the channel's rate limit cannot be read (cache down)",
                countdown=CACHE_DOWN_RETRY_SECONDS,
            ) from exc
        if wait <= 0:
            return
        if waited + wait > STOCK_READ_INLINE_WAIT_SECONDS:
            raise ProcessingThrottled("the channel's rate limit is spent", countdown=wait)
        time.sleep(wait)
        waited += wait
