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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_sync.adapters import AdapterError, ChannelEvent, MarketOrder, Outcome
from channels_sync.models import Channel
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
        # Imported here: the stock reports' module builds on this one's claim and outcomes.
        from webhooks.services.stock_reports import stock_report_process

        return stock_report_process(event, channel, adapter, parsed)
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
    parsed = webhook_event_reparse(
        adapter=adapter, body=bytes(event.body), headers=dict(event.headers or {})
    )
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
