"""Order polling, because webhooks get lost: every channel lists its orders updated since a
cursor (minus an overlap) and applies their current detail through the order services.

The cursor moves after every poll whose listing succeeded. An order listed but not applied
(the detail call left it out or failed, or applying it raised) is kept as a webhook event
of its own (source `poll`, status `received`) and queued: processing fetches its detail
again and applies it, retrying with backoff and dead-lettering like any notification. So
one bad order never holds the cursor back (the window would grow every poll), and no
listed order is dropped. Only a failed listing keeps the cursor: the next poll covers the
same range again. The order services make a second sighting of an order (by a webhook or
by an overlapping poll) harmless.

A marketplace whose order list may cover only so long a window in one go
(`Adapter.orders_max_window_seconds`, Amazon's hour) is polled slice by slice, oldest
first: each slice is listed, its orders applied (or kept as events), and only then the
cursor moves to the slice's end. The first failing listing (a throttle, most often) stops
the poll there; the next poll resumes from the cursor. So a window too busy for one
listing (the time after an outage) is covered over a few polls instead of failing whole
every time.

A long window is cut into at most `MAX_SLICES_PER_POLL` slices (each longer than the
adapter's window when need be), so a whole catch-up (a new channel's first look-back of
days) fits in one burst of the marketplace's list quota: with hour slices Amazon's burst
of 20 getOrders would end the first poll two days back, and its pace of about one call a
minute would take over an hour to reach today's orders. The trade-off: a long slice of a
very busy stretch may need more pages than one burst; its listing is then throttled and
the slice is listed again by later polls (the window stays, the cursor moves per slice
completed). So that such a slice cannot stall a channel for good (more pages than a
burst are never listed in one go), a poll whose first, lengthened slice failed has the
channel's next polls cut plain slices of the adapter's window (`SHORT_SLICES_KEY`) until
one reaches the window's end.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from channels_sync.adapters import Adapter, AdapterError, Outcome, adapter_class
from channels_sync.models import Channel
from channels_sync.services.reconcile_guard import deferred_conflicts_enqueue
from channels_sync.services.run_lock import RunLock
from channels_sync.services.tokens import channel_adapter, channel_token_refresh
from core.cache import CACHE_ERRORS, QUEUE_ERRORS, cache_degraded
from orders.services import order_apply_market
from webhooks.metrics import ORDER_POLLS
from webhooks.services.events import PollMiss, webhook_events_poll_defer
from webhooks.tasks import poll_channel

logger = structlog.get_logger(__name__)

POLL_LOCK_KEY = "webhooks:orders_poll_lock:{channel_id}"
POLL_LOCK_SECONDS = 60
# The most slices one poll cuts its window into: the list calls of a whole catch-up stay
# within a burst of the strictest quota (Amazon getOrders: 20), leaving room for pages.
MAX_SLICES_PER_POLL = 8
# Set when a poll's first, lengthened slice failed: the channel's next polls cut slices of
# the adapter's own window until one reaches the end of its window.
SHORT_SLICES_KEY = "webhooks:orders_poll_short_slices:{channel_id}"
SHORT_SLICES_SECONDS = 7 * 24 * 3600


@dataclass
class PollReport:
    """What one poll of a channel did."""

    channel_id: int
    # ok; deferred (listed, some kept as events to retry); stopped (out of time: what was
    # not applied is kept as events); failed (the listing failed); busy; skipped
    outcome: str = "ok"
    since: datetime | None = None
    until: datetime | None = None
    # Where the cursor is after this poll (None: it did not move); before `until` when the
    # poll stopped after some of its slices.
    reached: datetime | None = None
    slices: int = 0  # slices of the window listed and applied
    listed: int = 0
    applied: int = 0
    missing: list[str] = field(default_factory=list)  # listed, but not returned by the detail
    failed: list[str] = field(default_factory=list)  # returned, but could not be applied
    deferred: list[int] = field(default_factory=list)  # events keeping those orders to retry
    error: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        for name in ("since", "until", "reached"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


def orders_poll_enqueue_due() -> list[int]:
    """Queue a poll of every active channel that can be called (beat, every
    `ORDERS_POLL_INTERVAL_SECONDS`). A queue outage skips this round: the cursor has not
    moved, so the next round covers the time missed. Returns the channels queued."""
    ids = list(
        Channel.objects.filter(active=True, needs_reauth=False)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    queued = []
    for channel_id in ids:
        try:
            poll_channel.apply_async(kwargs={"channel_id": channel_id})
        except QUEUE_ERRORS:
            logger.warning("orders_poll.enqueue_failed", channel_id=channel_id, exc_info=True)
            continue
        queued.append(channel_id)
    return queued


def orders_poll_channel(*, channel_id: int) -> PollReport:
    """Apply the channel's orders updated since its cursor (minus the overlap) until now.

    One poll per channel at a time (a run lock in the shared cache: a second one returns
    `busy`). The window is walked in slices (`poll_slices`: the adapter's
    `orders_max_window_seconds`, longer when the window would need more than
    `MAX_SLICES_PER_POLL`; one slice when it has none), oldest first. Each slice is
    listed through `orders_updated`, its details fetched in batches
    (`ORDERS_POLL_FETCH_BATCH`) and each applied with `order_apply_market(source="poll")`;
    no transaction spans the outside calls. Once a slice's listing succeeded the cursor
    moves to the slice's end, and every listed order not applied (left out by the detail
    call, a detail call refused for good, an apply that raised, or the task's soft time
    limit reached first) is kept by `webhook_events_poll_defer` as an event with retries of
    its own. A failed listing, or a detail call failing other than for good (5xx,
    throttled, auth), is reported (`failed`), not raised, and stops the poll with the
    cursor at the end of the last slice done (what was applied stays).
    """
    report = PollReport(channel_id=channel_id)
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None or not channel.active or channel.needs_reauth:
        report.outcome = "skipped"
        return report
    lock = RunLock(POLL_LOCK_KEY.format(channel_id=channel_id), seconds=POLL_LOCK_SECONDS)
    if not lock.acquire():
        report.outcome = "busy"
        ORDER_POLLS.labels(channel.type, "busy").inc()
        return report
    try:
        now = timezone.now()
        report.since, report.until = poll_window(channel, now)
        try:
            adapter = channel_adapter(channel)
            if not channel_token_refresh(channel=channel, adapter=adapter):
                raise AdapterError("the channel needs re-authorisation")
        except AdapterError as exc:
            report.outcome = "failed"
            report.error = f"{exc.outcome}: {exc}"[:500]
            adapter = None
        if adapter is not None:
            _poll_slices_walk(channel, adapter, report)
        Channel.objects.filter(pk=channel_id).update(orders_polled_at=now)
        if report.reached is not None and not report.deferred:
            # The orders up to the cursor are applied: stock conflicts held back as possible
            # late sales can be resolved now. (Orders kept as events to retry may be the very
            # sales they wait for: a later poll queues them once those are applied.)
            deferred_conflicts_enqueue(channel_id=channel_id, polled_until=report.reached)
    finally:
        lock.release()
    ORDER_POLLS.labels(channel.type, report.outcome).inc()
    log = logger.info if report.outcome == "ok" else logger.warning
    log("orders_poll.finished", **report.as_dict())
    return report


def _poll_slices_walk(channel: Channel, adapter: Adapter, report: PollReport) -> None:
    """Poll the report's window slice by slice, up to the first that fails; remember for
    the channel's next polls whether slices must stay at the adapter's own window."""
    key = SHORT_SLICES_KEY.format(channel_id=channel.pk)
    try:
        short = bool(cache.get(key))
    except CACHE_ERRORS as exc:
        cache_degraded("orders_poll_slices", exc)
        short = False
    slices = poll_slices(report.since, report.until, type(adapter), grow=not short)
    for start, end in slices:
        if not _poll_slice(channel, adapter, report, start, end):
            break
    longest = type(adapter).orders_max_window_seconds
    first_failed_long = (
        report.slices == 0
        and report.outcome == "failed"
        and bool(longest)
        and (slices[0][1] - slices[0][0]).total_seconds() > longest
    )
    try:
        if first_failed_long:
            cache.set(key, 1, SHORT_SLICES_SECONDS)
            logger.warning("orders_poll.slices_shortened", channel_id=channel.pk)
        elif short and report.reached == report.until:
            cache.delete(key)
    except CACHE_ERRORS as exc:
        cache_degraded("orders_poll_slices", exc)


def poll_slices(
    since: datetime, until: datetime, adapter_cls: type[Adapter], *, grow: bool = True
) -> list[tuple[datetime, datetime]]:
    """The window [since, until) cut into slices, oldest first (the whole window when the
    adapter has no `orders_max_window_seconds`).

    A slice lasts the adapter's `orders_max_window_seconds`, or the window's
    `MAX_SLICES_PER_POLL`th part when that is longer, so there are never more than
    `MAX_SLICES_PER_POLL` slices (the last one may be shorter). With `grow` false every
    slice lasts the adapter's window, however many there are.
    """
    longest = adapter_cls.orders_max_window_seconds
    if not longest or longest <= 0 or until <= since:
        return [(since, until)]
    step = timedelta(seconds=longest)
    if grow:
        step = max(step, (until - since) / MAX_SLICES_PER_POLL)
    slices = []
    start = since
    while start < until:
        end = min(start + step, until)
        slices.append((start, end))
        start = end
    return slices


def _poll_slice(
    channel: Channel, adapter: Adapter, report: PollReport, start: datetime, end: datetime
) -> bool:
    """List and apply one slice; move the cursor to its end once listed. False: stop here."""
    listed: dict[str, PollMiss] | None = None
    go_on = True
    try:
        listed = _list(adapter, report, start, end)
        _apply(channel, adapter, report, listed, end)
    except AdapterError as exc:  # only the listing raises it (_apply keeps the rest)
        report.outcome = "failed"
        report.error = f"{exc.outcome}: {exc}"[:500]
        go_on = False
    except DetailsFailing as exc:
        # Orders applied so far stay applied; the cursor stays for the rest.
        report.outcome = "failed"
        report.error = f"details: {exc}"[:500]
        listed = None
        go_on = False
    except SoftTimeLimitExceeded:
        # Out of time: stop cleanly. What was listed and not applied yet is kept below.
        report.outcome = "stopped"
        report.error = "the poll ran out of time"
        go_on = False
    if listed is None:
        return False
    misses = list(listed.values())
    if misses:
        report.deferred.extend(webhook_events_poll_defer(channel=channel, misses=misses))
        if report.outcome == "ok":
            report.outcome = "deferred"
    Channel.objects.filter(pk=channel.pk).update(orders_cursor=end)
    report.reached = end
    report.slices += 1
    return go_on


class DetailsFailing(Exception):
    """The marketplace's detail call is failing (not refusing): the poll stops, cursor kept."""


def poll_window(channel: Channel, now: datetime) -> tuple[datetime, datetime]:
    """The [since, until) a poll of the channel covers now: until is now, less the lag of
    the marketplace's order list (`Adapter.orders_lag_seconds`, Amazon's two minutes), so
    the cursor never passes orders the list cannot show yet."""
    until = now - timedelta(seconds=adapter_class(channel.type).orders_lag_seconds)
    if channel.orders_cursor is None:
        since = now - timedelta(seconds=settings.ORDERS_POLL_FIRST_LOOKBACK_SECONDS)
    else:
        since = channel.orders_cursor - timedelta(seconds=settings.ORDERS_POLL_OVERLAP_SECONDS)
    return since, until


def _list(
    adapter: Adapter, report: PollReport, since: datetime, until: datetime
) -> dict[str, PollMiss]:
    """The orders updated in [since, until), each as a miss until it is applied."""
    refs = adapter.orders_updated(since=since, until=until)
    listed: dict[str, PollMiss] = {}
    for ref in refs:
        # One retry per version of an order: overlapping polls keep it once. A list without
        # update times (Shopee's) names the version by the status it shows.
        version = (
            ref.updated_at.isoformat() if ref.updated_at else f"status:{ref.raw_status or '-'}"
        )
        listed[ref.external_id] = PollMiss(
            order_id=ref.external_id, version=version, reason="missing", raw_status=ref.raw_status
        )
    report.listed += len(listed)
    return listed


def _apply(
    channel: Channel,
    adapter: Adapter,
    report: PollReport,
    listed: dict[str, PollMiss],
    until: datetime,
) -> None:
    """Fetch and apply the listed orders; each applied one leaves `listed`."""
    size = max(1, settings.ORDERS_POLL_FETCH_BATCH)
    event_ref = f"orders_poll:{channel.pk}:{until.isoformat()}"
    ids = list(listed)
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        try:
            orders = {order.external_id: order for order in adapter.orders_fetch(batch)}
        except AdapterError as exc:
            logger.warning("orders_poll.fetch_failed", channel_id=channel.pk, error=str(exc))
            if exc.outcome != Outcome.PERMANENT:
                # The marketplace is failing: stop calling it and keep the cursor, so the
                # next poll lists these orders again (no event per order, each fetched
                # alone, while it is down).
                raise DetailsFailing(f"{exc.outcome}: {exc}") from exc
            # This batch is refused for good: its orders retry as events of their own
            # (each fetched alone), the other batches go on.
            for order_id in batch:
                listed[order_id] = _missed(listed[order_id], f"fetch: {exc.outcome}: {exc}")
            continue
        report.missing.extend(order_id for order_id in batch if order_id not in orders)
        for order_id in batch:
            order = orders.get(order_id)
            if order is None:
                continue
            try:
                order_apply_market(channel=channel, order=order, source="poll", event_ref=event_ref)
            except SoftTimeLimitExceeded:
                raise
            except Exception as exc:
                logger.exception(
                    "orders_poll.apply_failed", channel_id=channel.pk, order_id=order_id
                )
                report.failed.append(order_id)
                listed[order_id] = _missed(listed[order_id], f"{type(exc).__name__}: {exc}")
                continue
            del listed[order_id]
            report.applied += 1
    if report.missing:
        logger.warning("orders_poll.missing", channel_id=channel.pk, order_ids=report.missing)


def _missed(miss: PollMiss, reason: str) -> PollMiss:
    return PollMiss(
        order_id=miss.order_id, version=miss.version, reason=reason, raw_status=miss.raw_status
    )
