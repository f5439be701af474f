"""Processing stored webhook events; the sweep of lost ones; the purge of old ones.

An order notification carries only ids and statuses, so processing fetches the order's
current detail through the channel's adapter and hands it to the order services, which
apply a state at most once whichever path (webhook or poll) sees it first. A claim (a
lease on the event row, taken by a conditional UPDATE) keeps two workers off one event;
no transaction is open while the marketplace is called.
"""

from collections.abc import Iterable
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_sync.adapters import AdapterError, MarketOrder, Outcome
from channels_sync.models import Channel
from channels_sync.services.tokens import channel_adapter, channel_token_refresh
from orders.services import order_apply_market
from webhooks.metrics import WEBHOOKS
from webhooks.models import WebhookEvent
from webhooks.selectors import events_stuck
from webhooks.services.intake import TOPIC_ORDER, webhook_event_enqueue_or_defer

logger = structlog.get_logger(__name__)

PURGE_BATCH = 5000
ERROR_LIMIT = 2000


class ProcessingRetry(Exception):
    """This attempt failed; a later one may succeed (a 5xx, a timeout, an order not yet
    returned by the marketplace). The task retries it with backoff."""


def webhook_event_process(*, event_id: int) -> str:
    """Process one stored event: fetch its order's detail and apply it. Returns the outcome.

    `processed`, `ignored` (a topic other than an order), or `skipped` (gone, already done,
    or held by another worker: a claim, not a lock, so no transaction spans the outside
    calls). Raises `ProcessingRetry` for a failure worth retrying (the event keeps its
    claim until the caller schedules the retry or gives up); any other error marks the
    event failed and propagates. Idempotent: the order services apply a state once.
    """
    event = _claim(event_id)
    if event is None:
        return "skipped"
    channel = event.channel
    if event.topic != TOPIC_ORDER or not event.order_id:
        _finish(event, WebhookEvent.Status.IGNORED)
        return "ignored"
    try:
        order = _fetch(channel, event.order_id)
        order_apply_market(
            channel=channel, order=order, source="webhook", event_ref=f"webhook_event:{event.pk}"
        )
    except ProcessingRetry:
        raise
    except OperationalError as exc:  # a deadlock or a lost connection: worth another try
        raise ProcessingRetry(f"database: {exc}") from exc
    except Exception as exc:
        webhook_event_fail(event_id=event.pk, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(event, WebhookEvent.Status.PROCESSED)
    return "processed"


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
    return WebhookEvent.objects.select_related("channel").defer("body").get(pk=event_id)


def _fetch(channel: Channel, order_id: str) -> MarketOrder:
    """The order's current detail from the marketplace (token refreshed first)."""
    adapter = channel_adapter(channel)
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


def _finish(event: WebhookEvent, status: str) -> None:
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event.pk).update(
        status=status, processed_at=now, error="", locked_until=None, updated_at=now
    )
    WEBHOOKS.labels(event.channel.type, status).inc()
    logger.info("webhook.processed", event_id=event.pk, status=status, order_id=event.order_id)


def webhook_event_retry_at(*, event_id: int, countdown: float, error: str = "") -> None:
    """Record a failed attempt whose retry is due in `countdown` seconds; release the claim.

    The sweep leaves the event to that retry (until it is overdue by the grace).
    """
    now = timezone.now()
    WebhookEvent.objects.filter(pk=event_id).update(
        next_attempt_at=now + timedelta(seconds=countdown),
        locked_until=None,
        error=error[:ERROR_LIMIT],
        updated_at=now,
    )
    logger.warning("webhook.process_retry", event_id=event_id, countdown=countdown, error=error)


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


def webhook_events_sweep() -> list[int]:
    """Queue the events left `received` past the grace (`WEBHOOK_SWEEP_GRACE_SECONDS`).

    A crash between an event's commit and its enqueue, or a queue outage, leaves such
    events; an event held by a worker or waiting for its retry is left alone. Returns the
    ids queued (the rest wait for the next sweep).
    """
    grace = timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE_SECONDS)
    ids = events_stuck(grace=grace)
    queued = [event_id for event_id in ids if webhook_event_enqueue_or_defer(event_id)]
    if ids:
        logger.info("webhook.sweep", stuck=len(ids), queued=len(queued))
    return queued


def webhook_events_reprocess(*, event_ids: Iterable[int], actor: str) -> list[int]:
    """Process these events again, whatever their status (staff, from the admin).

    Each is set back to `received` and queued after the commit; an event a worker holds
    right now is left to it. Returns the ids queued.
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
