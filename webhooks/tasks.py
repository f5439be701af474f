"""Webhook tasks (queue `webhooks`) and order-poll tasks (queue `orders`, so a slow poll
never delays a notification): thin shells over the services."""

import structlog
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from core.task_base import BaseTask, backoff_seconds

logger = structlog.get_logger(__name__)


class RetryableProcessingError(Exception):
    """Processing an event failed in a way a later attempt may not (a 5xx, a missing order)."""


@shared_task(name="webhooks.process_event", bind=True, base=BaseTask, dead_letter_source="webhooks")
def process_event(self, event_id: int) -> str:
    """Process one stored webhook event (fetch the order's detail, apply it).

    Safe to run twice: a processed or ignored event is left alone, a claim keeps two
    workers off the same event, and the order services apply a state at most once.
    Retryable failures (and running out of time: the soft time limit) retry with backoff
    (`WEBHOOK_PROCESS_MAX_RETRIES`); the last one marks the event failed and lands in the
    dead-letter queue, whose retry queues this task with the same event id again.

    Eager mode (no broker: the task runs inside the webhook's request) never retries in
    place, which would call the marketplace several times before the answer: the event is
    left `received` with its next attempt's time, and the minute sweep is its retry. The
    attempts are then counted on the event (a dead letter's retry gets one more attempt).

    A throttled read (`ProcessingThrottled`: the channel's bucket or the marketplace said
    "wait") uses up no attempt and never dead-letters: the task is queued again after the
    wait with its retry count unchanged.
    """
    from webhooks.services.events import (
        ProcessingRetry,
        ProcessingThrottled,
        webhook_event_attempts,
        webhook_event_fail,
        webhook_event_process,
        webhook_event_retry_at,
        webhook_event_retry_throttled,
    )

    try:
        return webhook_event_process(event_id=event_id)
    except ProcessingThrottled as exc:
        # "Wait", not a failure: the attempt is given back and the event tried again later
        # (this task queued again with its retries unchanged; eager: the sweep, when due).
        # The claim is released before the task is queued again, so the next run never finds
        # the event still held; if queueing fails, the sweep takes it once it is overdue.
        eager = bool(self.request.is_eager)
        webhook_event_retry_throttled(
            event_id=event_id, countdown=exc.countdown, error=str(exc), queued=not eager
        )
        if not eager:
            try:
                process_event.apply_async(
                    kwargs={"event_id": event_id},
                    countdown=exc.countdown,
                    retries=self.request.retries,
                )
            except Exception:
                logger.warning("webhook.throttled_requeue_failed", event_id=event_id)
        return "throttled"
    except (ProcessingRetry, SoftTimeLimitExceeded) as exc:
        error = str(exc) or type(exc).__name__
        eager = bool(self.request.is_eager)
        retries = webhook_event_attempts(event_id=event_id) - 1 if eager else self.request.retries
        if retries >= settings.WEBHOOK_PROCESS_MAX_RETRIES:
            webhook_event_fail(event_id=event_id, error=error)
            raise RetryableProcessingError(error) from exc
        countdown = backoff_seconds(retries, base=settings.WEBHOOK_PROCESS_RETRY_BACKOFF_SECONDS)
        webhook_event_retry_at(
            event_id=event_id, countdown=countdown, error=error, queued=not eager
        )
        if eager:
            return "deferred"
        raise self.retry(
            exc=RetryableProcessingError(error),
            countdown=countdown,
            max_retries=settings.WEBHOOK_PROCESS_MAX_RETRIES,
        ) from exc


@shared_task(name="webhooks.sweep")
def sweep() -> list[int]:
    """Queue the events left `received` and not queued within the grace (beat: every minute).

    Catches a crash between an event's commit and its enqueue, a queue outage, and (eager
    mode) is the retry of a failed attempt. Also writes the signature failures still
    pending in the cache to their channels' rows (a burst nobody looked at since).
    """
    from channels_sync.services.signature_failures import channel_signature_failures_flush
    from webhooks.services.events import webhook_events_sweep

    channel_signature_failures_flush()
    return webhook_events_sweep()


@shared_task(name="webhooks.purge_events")
def purge_events() -> int:
    """Delete processed and ignored events past `WEBHOOK_EVENT_RETENTION_DAYS` (beat: daily)."""
    from webhooks.services.events import webhook_events_purge

    return webhook_events_purge()


@shared_task(name="webhooks.poll_orders")
def poll_orders() -> list[int]:
    """Queue a poll of every active channel due one (beat: every minute)."""
    from webhooks.services.polling import orders_poll_enqueue_due

    return orders_poll_enqueue_due()


@shared_task(name="webhooks.poll_channel", bind=True, base=BaseTask, dead_letter_source="webhooks")
def poll_channel(self, channel_id: int) -> dict:
    """Poll one channel's orders updated since its cursor and apply them (one at a time).

    A poll whose listing failed leaves the cursor where it was: the next poll covers the
    same range (the next beat is the retry). Orders listed but not applied are kept as
    events with retries of their own, and the cursor moves on.
    """
    from webhooks.services.polling import orders_poll_channel

    return orders_poll_channel(channel_id=channel_id).as_dict()
