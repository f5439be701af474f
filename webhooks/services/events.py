"""Processing stored webhook events; the sweep of lost ones; the purge of old ones.

An order notification carries only ids and statuses, so processing fetches the order's
current detail through the channel's adapter and hands it to the order services, which
apply a state at most once whichever path (webhook or poll) sees it first. A claim (a
lease on the event row, taken by a conditional UPDATE) keeps two workers off one event;
no transaction is open while the marketplace is called.

A notification's fields are read again from its stored body by the channel's adapter each
time it is processed (so a reprocess or a dead letter's retry honours a parser fixed since:
an event kept as `unreadable` or another topic becomes processable). Orders a poll could not
apply are kept as events too (source `poll`, see `webhook_events_poll_defer`), so they retry,
back off and dead-letter exactly like notifications.
"""

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_sync.adapters import AdapterError, ChannelEvent, MarketOrder, Outcome, StockReport
from channels_sync.models import Channel, ChannelListing, Conflict
from channels_sync.ratelimit import rate_limit_take
from channels_sync.services.reconcile import ListingObservation, listing_observe
from channels_sync.services.tokens import channel_adapter, channel_token_refresh
from orders.services import order_apply_market
from webhooks.metrics import WEBHOOKS
from webhooks.models import WebhookEvent
from webhooks.services.intake import (
    TOPIC_ORDER,
    TOPIC_STOCK,
    TOPIC_UNREADABLE,
    storable,
    webhook_event_enqueue_or_defer,
    webhook_event_insert,
    webhook_event_reparse,
)

logger = structlog.get_logger(__name__)

PURGE_BATCH = 5000
ERROR_LIMIT = 2000
SWEEP_LIMIT = 1000


class ProcessingRetry(Exception):
    """This attempt failed; a later one may succeed (a 5xx, a timeout, an order not yet
    returned by the marketplace). The task retries it with backoff."""


class ProcessingThrottled(Exception):
    """The marketplace (or the channel's own rate limit) says "wait": not a failure. The task
    tries again after `countdown` seconds without using up an attempt, however often."""

    def __init__(self, message: str, *, countdown: float) -> None:
        super().__init__(message)
        self.countdown = max(0.0, float(countdown))


# A stock read-back waits in place at most this long for a token of the channel's bucket;
# beyond, the event is retried later (`ProcessingThrottled`).
STOCK_READ_INLINE_WAIT_SECONDS = 5.0


def webhook_event_process(*, event_id: int) -> str:
    """Process one stored event: fetch its order's detail and apply it. Returns the outcome.

    `processed`, `ignored` (a topic other than an order), or `skipped` (gone, already done,
    or held by another worker: a claim, not a lock, so no transaction spans the outside
    calls). A notification's fields are first read again from its stored body (see the
    module). Raises `ProcessingRetry` for a failure worth retrying, and lets Celery's
    `SoftTimeLimitExceeded` through (the event keeps its claim until the caller schedules
    the retry or gives up); any other error marks the event failed and propagates.
    Idempotent: the order services apply a state once.
    """
    event = _claim(event_id)
    if event is None:
        return "skipped"
    channel = event.channel
    adapter = channel_adapter(channel)
    parsed = None
    if event.source == WebhookEvent.Source.WEBHOOK:
        parsed = _reparse(event, adapter)
    if event.topic == TOPIC_STOCK and parsed is not None:
        return _stock_process(event, channel, adapter, parsed)
    if event.topic != TOPIC_ORDER or not event.order_id:
        _finish(event, WebhookEvent.Status.IGNORED)
        return "ignored"
    try:
        order = _fetch(channel, adapter, event.order_id)
        order_apply_market(
            channel=channel,
            order=order,
            source=event.source,
            event_ref=f"webhook_event:{event.pk}",
        )
    except (ProcessingRetry, SoftTimeLimitExceeded):
        # Out of time is no fault of the event: the task retries it like a 5xx.
        raise
    except OperationalError as exc:  # a deadlock or a lost connection: worth another try
        raise ProcessingRetry(f"database: {exc}") from exc
    except Exception as exc:
        webhook_event_fail(event_id=event.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(event, WebhookEvent.Status.PROCESSED)
    return "processed"


def _reparse(event: WebhookEvent, adapter) -> ChannelEvent:
    """Read the notification's fields again from its stored body (the adapter as it is now);
    return the adapter's reading."""
    parsed = webhook_event_reparse(adapter=adapter, body=bytes(event.body))
    fields = {
        "topic": parsed.topic,
        "order_id": parsed.order_id or "",
        "notified_status": parsed.status or "",
    }
    changed = {name: value for name, value in fields.items() if getattr(event, name) != value}
    if not changed:
        return parsed
    WebhookEvent.objects.filter(pk=event.pk).update(**changed, updated_at=timezone.now())
    for name, value in changed.items():
        setattr(event, name, value)
    logger.info("webhook.reparsed", event_id=event.pk, **changed)
    return parsed


def _stock_process(event: WebhookEvent, channel: Channel, adapter, parsed: ChannelEvent) -> str:
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


def _rate_token(channel: Channel, adapter) -> None:
    """Take a token from the channel's bucket, waiting in place a little at most."""
    cls = type(adapter)
    rate = channel.rate_limit_per_second or cls.default_rate_per_second
    burst = channel.rate_limit_burst or cls.default_burst
    waited = 0.0
    while True:
        wait = rate_limit_take(f"channel:{channel.pk}", rate=rate, burst=burst)
        if wait <= 0:
            return
        if waited + wait > STOCK_READ_INLINE_WAIT_SECONDS:
            raise ProcessingThrottled("the channel's rate limit is spent", countdown=wait)
        time.sleep(wait)
        waited += wait


def _claim(event_id: int) -> WebhookEvent | None:
    """Take the event for this worker (attempts + 1), unless it is done or held."""
    now = timezone.now()
    lease = timedelta(seconds=settings.WEBHOOK_PROCESS_LEASE_SECONDS)
    claimed = (
        WebhookEvent.objects.filter(
            pk=event_id, status__in=[WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED]
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .update(
            attempts=F("attempts") + 1,
            locked_until=now + lease,
            next_attempt_at=None,
            updated_at=now,
        )
    )
    if not claimed:
        logger.info("webhook.process_skipped", event_id=event_id)
        return None
    return WebhookEvent.objects.select_related("channel").get(pk=event_id)


def _fetch(channel: Channel, adapter, order_id: str) -> MarketOrder:
    """The order's current detail from the marketplace (token refreshed first)."""
    try:
        if not channel_token_refresh(channel=channel, adapter=adapter):
            raise ProcessingRetry("the channel needs re-authorisation")
        try:
            orders = adapter.orders_fetch([order_id])
        except AdapterError as exc:
            if exc.outcome != Outcome.AUTH:
                raise
            # An access token refused before its time: refresh once and ask again.
            if not channel_token_refresh(channel=channel, adapter=adapter, force=True):
                raise ProcessingRetry("the channel needs re-authorisation") from exc
            orders = adapter.orders_fetch([order_id])
    except AdapterError as exc:
        raise ProcessingRetry(f"{exc.outcome}: {exc}") from exc
    for order in orders:
        if order.external_id == order_id:
            return order
    raise ProcessingRetry(f"the marketplace did not return order {order_id} (yet)")


def _finish(event: WebhookEvent, status: str, *, error: str = "") -> None:
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=status,
        processed_at=now,
        error=error[:ERROR_LIMIT],
        locked_until=None,
        updated_at=now,
    )
    WEBHOOKS.labels(event.channel.type, status).inc()
    logger.info("webhook.processed", event_id=event.pk, status=status, order_id=event.order_id)


def webhook_event_retry_at(
    *, event_id: int, countdown: float, error: str = "", queued: bool = True
) -> None:
    """Record a failed attempt whose retry is due in `countdown` seconds; release the claim.

    `queued`: the retry is a task queued now (a broker), so the sweep leaves the event to it
    until it is overdue by the grace. Otherwise (eager mode: no broker, nothing runs later by
    itself) the sweep is the retry, and takes the event once its attempt is due.
    """
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event_id).update(
        next_attempt_at=now + timedelta(seconds=countdown),
        locked_until=None,
        queued_at=now if queued else None,
        error=error[:ERROR_LIMIT],
        updated_at=now,
    )
    logger.warning(
        "webhook.process_retry", event_id=event_id, countdown=countdown, queued=queued, error=error
    )


def webhook_event_retry_throttled(
    *, event_id: int, countdown: float, error: str, queued: bool
) -> None:
    """Give back the attempt this claim took and schedule the event in `countdown` seconds.

    A throttled event ("wait", not a failure) is never failed nor dead-lettered for it:
    however often it is throttled, its attempts count only real failures. `queued` as for
    `webhook_event_retry_at`.
    """
    WebhookEvent.objects.filter(pk=event_id, attempts__gt=0).update(attempts=F("attempts") - 1)
    webhook_event_retry_at(event_id=event_id, countdown=countdown, error=error, queued=queued)


def webhook_event_attempts(*, event_id: int) -> int:
    """How many times the event was taken for processing (0 when it is gone)."""
    return WebhookEvent.objects.filter(pk=event_id).values_list("attempts", flat=True).first() or 0


def webhook_event_fail(*, event_id: int, error: str) -> None:
    """Mark an event failed for good (its task goes to the dead-letter queue); release it."""
    now = timezone.now()
    changed = WebhookEvent.objects.filter(pk=event_id).update(
        status=WebhookEvent.Status.FAILED,
        error=error[:ERROR_LIMIT],
        locked_until=None,
        next_attempt_at=None,
        updated_at=now,
    )
    if changed:
        channel_type = (
            Channel.objects.filter(webhook_events=event_id).values_list("type", flat=True).first()
        )
        WEBHOOKS.labels(channel_type or "unknown", "failed").inc()
    logger.error("webhook.process_failed", event_id=event_id, error=error)


def webhook_events_sweep(*, eager: bool | None = None) -> list[int]:
    """Queue the events left `received` and not queued within the grace
    (`WEBHOOK_SWEEP_GRACE_SECONDS`).

    A crash between an event's commit and its enqueue, or a queue outage, leaves such
    events; an event held by a worker, queued within the grace (a backlog in the queue, a
    reprocess) or waiting for its retry is left alone. The events are taken and marked
    queued by one UPDATE ... RETURNING (rows another sweep holds are skipped), so two
    sweeps never queue one event twice, and a still-waiting task is never doubled every
    minute. In eager mode (`eager`, by default the Celery app's own setting) the sweep is
    the retry of a failed attempt, so an event is taken once its attempt is due; with a
    broker, only once that retry is overdue by the grace. Returns the ids queued (the rest
    wait for the next sweep).
    """
    if eager is None:
        eager = bool(process_event_app().conf.task_always_eager)
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    table = WebhookEvent._meta.db_table
    sql = f"""
        UPDATE {table} SET queued_at = %(now)s, updated_at = %(now)s
        WHERE id IN (
            SELECT id FROM {table}
            WHERE status = %(received)s
              AND (queued_at IS NULL OR queued_at < %(cutoff)s)
              AND (locked_until IS NULL OR locked_until < %(now)s)
              AND (next_attempt_at IS NULL OR next_attempt_at < %(retry_cutoff)s)
            ORDER BY received_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        RETURNING id
    """  # the table name is the model's; every value is a parameter
    params = {
        "now": now,
        "cutoff": cutoff,
        "retry_cutoff": now if eager else cutoff,
        "received": WebhookEvent.Status.RECEIVED,
        "limit": SWEEP_LIMIT,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = sorted(row[0] for row in cursor.fetchall())
    # Queued after the commit: a failed enqueue is taken again once the grace passes.
    queued = [event_id for event_id in ids if webhook_event_enqueue_or_defer(event_id)]
    if ids:
        logger.info("webhook.sweep", stuck=len(ids), queued=len(queued))
    return queued


def process_event_app():
    """The Celery app the events are queued on (its eager setting decides the sweep)."""
    from webhooks.tasks import process_event

    return process_event.app


def webhook_events_reprocess(*, event_ids: Iterable[int], actor: str) -> list[int]:
    """Process these events again, whatever their status (staff, from the admin).

    Each is set back to `received` (marked queued) and queued after the commit; an event a
    worker holds right now is left to it. Processing reads a notification's body again with
    the channel's adapter, so an event stored as `unreadable` or another topic by a parser
    since fixed is processed as what it is now. Returns the ids queued.
    """
    now = timezone.now()
    ids = list(event_ids)
    with transaction.atomic():
        reset = list(
            WebhookEvent.objects.filter(pk__in=ids)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .order_by("pk")
            .select_for_update()
            .values_list("pk", flat=True)
        )
        WebhookEvent.objects.filter(pk__in=reset).update(
            status=WebhookEvent.Status.RECEIVED,
            next_attempt_at=None,
            processed_at=None,
            queued_at=now,
            updated_at=now,
        )
        for event_id in reset:
            transaction.on_commit(
                lambda event_id=event_id: webhook_event_enqueue_or_defer(event_id), robust=True
            )
    logger.info("webhook.reprocess", event_ids=reset, actor=actor)
    return reset


def webhook_events_purge(*, now=None) -> int:
    """Delete processed and ignored events older than `WEBHOOK_EVENT_RETENTION_DAYS`.

    Received and failed events are kept whatever their age (they still need attention).
    Deleted in batches, so no long transaction holds the table. Returns how many.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_EVENT_RETENTION_DAYS)
    done = [WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED]
    deleted = 0
    while True:
        batch = list(
            WebhookEvent.objects.filter(status__in=done, received_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not batch:
            break
        deleted += WebhookEvent.objects.filter(pk__in=batch, status__in=done).delete()[0]
    logger.info("webhook.purged", deleted=deleted, cutoff=cutoff.isoformat())
    return deleted


@dataclass(frozen=True)
class PollMiss:
    """An order a poll listed but could not apply: why, and which version of it."""

    order_id: str
    version: str  # the listed update time (or the poll's end): one retry per version
    reason: str  # "missing" (not returned by the detail call) or the apply/fetch error
    raw_status: str = ""


def webhook_events_poll_defer(*, channel: Channel, misses: Iterable[PollMiss]) -> list[int]:
    """Keep each order a poll could not apply as an event of its own, and queue it.

    The poll's cursor moves on regardless; these events are the orders' durable retries:
    processing fetches the detail again and applies it, with backoff, then fails and
    dead-letters like a notification. Keyed `poll:<order id>:<version>` (unique per
    channel), so overlapping polls seeing the same version of an order keep it once. An
    order id PostgreSQL could not keep is stored as an `unreadable` event (ignored, seen in
    the console) under its digest. Returns the ids of the new events (queued after the
    commit, or left to the sweep when the queue is down).
    """
    now = timezone.now()
    created = []
    for miss in misses:
        body = json.dumps(
            {"order_id": miss.order_id, "version": miss.version, "reason": miss.reason},
            sort_keys=True,
        ).encode()  # ASCII: any NUL or surrogate is escaped
        readable = storable(miss.order_id, WebhookEvent._meta.get_field("order_id").max_length)
        if readable:
            topic, order_id = TOPIC_ORDER, miss.order_id
            key = f"poll:{miss.order_id}:{miss.version}"
        else:
            topic, order_id = TOPIC_UNREADABLE, ""
            key = f"poll:sha256:{hashlib.sha256(body).hexdigest()}"
        raw_status = miss.raw_status if storable(miss.raw_status, 100) else ""
        status = WebhookEvent.Status.RECEIVED if readable else WebhookEvent.Status.IGNORED
        event_id = webhook_event_insert(
            {
                "created_at": now,
                "updated_at": now,
                "channel_id": channel.pk,
                "source": WebhookEvent.Source.POLL,
                "topic": topic,
                "event_key": key,
                "order_id": order_id,
                "notified_status": raw_status,
                "body": body,
                "headers": {},
                "received_at": now,
                "status": status,
                "attempts": 0,
                "error": miss.reason[:ERROR_LIMIT],
                "processed_at": None if readable else now,
                "queued_at": now if readable else None,
                "correlation_id": "",
            }
        )
        if event_id is None:
            continue  # this version of the order is kept already
        created.append(event_id)
        if readable:
            transaction.on_commit(
                lambda event_id=event_id: webhook_event_enqueue_or_defer(
                    event_id, channel_type=channel.type
                ),
                robust=True,
            )
    if created:
        logger.warning("orders_poll.deferred", channel_id=channel.pk, event_ids=created)
    return created
