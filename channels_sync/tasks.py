"""Channel tasks (queue `push`): push one channel, retry one dead-lettered listing, the sweep,
and the automatic resolution of a stock conflict."""

import structlog
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from core.task_base import BaseTask, backoff_seconds

logger = structlog.get_logger(__name__)

# A run that found the channel busy (another worker pushing it) tries again this soon: a
# sale's new quantity waits at most this long behind the run before it (one waiting retry
# per channel, however many runs find it busy).
BUSY_RETRY_SECONDS = 1.0


@shared_task(name="channels_sync.push_channel")
def push_channel(channel_id: int, waiting: str = "") -> dict:
    """Push a channel's dirty listings; requeue itself when throttled or backing off.

    Safe to run twice (the target is a state, and one run per channel holds a lock). Marks
    made after this task starts queue another push; marks made before ride on this one.
    A run that finds the channel busy leaves at most one delayed retry per channel behind
    (`waiting` is that retry's token). Past its soft time limit (`CHANNEL_PUSH_SOFT_TIME_
    LIMIT_SECONDS`) the run gives its lock back and the rest is queued as a new push.
    Eager mode (the embedded default) never requeues: the foreground run or the sweep
    picks up what is left.
    """
    from channels_sync.services.dirty import (
        push_enqueue_or_defer,
        push_pending_clear,
        push_retry_when_free,
        push_waiting_clear,
    )
    from channels_sync.services.push import channel_push

    push_pending_clear(channel_id)
    if waiting:
        push_waiting_clear(channel_id, token=waiting)
    try:
        report = channel_push(channel_id=channel_id)
    except SoftTimeLimitExceeded:
        # The run released its lock on the way out; a fresh task goes on with the rest.
        logger.warning("push.time_limit", channel_id=channel_id)
        push_enqueue_or_defer([channel_id])
        return {"channel_id": channel_id, "stopped": "time_limit"}
    if push_channel.app.conf.task_always_eager:
        return report.as_dict()
    # Busy, throttled or backing off: one delayed retry waits per channel, however many runs
    # end this way (every stock change queues a run, and each would otherwise start a chain).
    if report.stopped == "busy":
        push_retry_when_free(channel_id, countdown=BUSY_RETRY_SECONDS)
    elif report.requeue_after is not None:
        push_retry_when_free(channel_id, countdown=report.requeue_after)
    return report.as_dict()


@shared_task(name="channels_sync.push_listing")
def push_listing(listing_id: int) -> bool:
    """Push one listing again from scratch (a dead letter retried from the console)."""
    from channels_sync.services.listings import listing_push_retry

    return listing_push_retry(listing_id=listing_id)


@shared_task(name="channels_sync.sweep")
def sweep() -> list[int]:
    """Queue a push of every channel with due dirty listings (beat: every minute).

    Catches marks whose push was never queued (a crash between the commit and the enqueue,
    a broker outage) and listings whose backoff has ended.
    """
    from channels_sync import selectors
    from channels_sync.services.dirty import push_enqueue_or_defer

    channel_ids = selectors.channels_with_due_listings()
    queued = push_enqueue_or_defer(channel_ids)
    if channel_ids:
        logger.info("push.sweep", due=len(channel_ids), queued=len(queued))
    return queued


@shared_task(bind=True, base=BaseTask, name="channels_sync.conflict_auto_resolve", max_retries=5)
def conflict_auto_resolve(self, conflict_id: int) -> str:
    """Resolve an open stock conflict by its channel's policy (queued after it opens).

    Safe to run twice: a conflict no longer open, or whose channel's policy is now manual,
    is left alone. A refusal (a decrease our stock cannot take) is recorded as a `failed`
    event and leaves the conflict open for a person; other failures (the database) retry
    with backoff, then dead-letter.
    """
    from channels_sync.services.conflict_resolution import conflict_auto_resolve as resolve

    try:
        return resolve(conflict_id=conflict_id)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc


@shared_task(name="channels_sync.reconcile_channels")
def reconcile_channels() -> list[int]:
    """Queue a reconciliation of every active channel, one task each (beat: every
    `CHANNEL_RECONCILE_INTERVAL_SECONDS`). Returns the channel ids queued."""
    from channels_sync.services.reconcile import channels_to_reconcile, reconcile_enqueue

    queued = reconcile_enqueue(channel_ids=channels_to_reconcile(), trigger="schedule")
    logger.info("reconcile.queued", channels=len(queued))
    return queued


@shared_task(name="channels_sync.reconcile_channel")
def reconcile_channel(channel_id: int, trigger: str = "schedule") -> dict:
    """Read one channel's stock back and compare it with what was pushed.

    Safe to run twice: one run per channel holds a lock (a second returns `busy`), and a
    difference seen again updates its open conflict. A channel gone or inactive returns
    quietly (the report says why).
    """
    from channels_sync.services.reconcile import channel_reconcile

    return channel_reconcile(channel_id=channel_id, trigger=trigger).as_dict()
