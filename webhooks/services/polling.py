"""Order polling, because webhooks get lost: every channel lists its orders updated since a
cursor (minus an overlap) and applies their current detail through the order services.

The cursor only moves after a poll that applied everything it listed, so a failure means
the next poll covers the same range again; the order services make a second sighting of an
order (by a webhook or by an overlapping poll) harmless.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.utils import timezone

from channels_sync.adapters import AdapterError
from channels_sync.models import Channel
from channels_sync.services.run_lock import RunLock
from channels_sync.services.tokens import channel_adapter, channel_token_refresh
from core.cache import QUEUE_ERRORS
from orders.services import order_apply_market
from webhooks.metrics import ORDER_POLLS
from webhooks.tasks import poll_channel

logger = structlog.get_logger(__name__)

POLL_LOCK_KEY = "webhooks:orders_poll_lock:{channel_id}"
POLL_LOCK_SECONDS = 60


@dataclass
class PollReport:
    """What one poll of a channel did."""

    channel_id: int
    outcome: str = "ok"  # ok, failed, busy, skipped
    since: datetime | None = None
    until: datetime | None = None
    listed: int = 0
    applied: int = 0
    missing: list[str] = field(default_factory=list)  # listed, but not returned by the detail
    failed: list[str] = field(default_factory=list)  # returned, but could not be applied
    error: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        for name in ("since", "until"):
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
    `busy`). Lists through `orders_updated`, fetches details in batches
    (`ORDERS_POLL_FETCH_BATCH`) and applies each with `order_apply_market(source="poll")`;
    no transaction spans the outside calls. The cursor moves to the poll's `until` only
    when every order fetched was applied; orders listed but not returned by the detail call
    are logged, not waited for. Marketplace failures are reported (`failed`), not raised.
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
            _poll(channel, report)
        except AdapterError as exc:
            report.outcome = "failed"
            report.error = f"{exc.outcome}: {exc}"[:500]
        if report.failed and report.outcome == "ok":
            report.outcome = "failed"
            report.error = f"{len(report.failed)} order(s) could not be applied"
        moved = {"orders_cursor": report.until} if report.outcome == "ok" else {}
        Channel.objects.filter(pk=channel_id).update(orders_polled_at=now, **moved)
    finally:
        lock.release()
    ORDER_POLLS.labels(channel.type, report.outcome).inc()
    log = logger.info if report.outcome == "ok" else logger.warning
    log("orders_poll.finished", **report.as_dict())
    return report


def poll_window(channel: Channel, now: datetime) -> tuple[datetime, datetime]:
    """The [since, until) a poll of the channel covers now."""
    if channel.orders_cursor is None:
        since = now - timedelta(seconds=settings.ORDERS_POLL_FIRST_LOOKBACK_SECONDS)
    else:
        since = channel.orders_cursor - timedelta(seconds=settings.ORDERS_POLL_OVERLAP_SECONDS)
    return since, now


def _poll(channel: Channel, report: PollReport) -> None:
    adapter = channel_adapter(channel)
    if not channel_token_refresh(channel=channel, adapter=adapter):
        raise AdapterError("the channel needs re-authorisation")
    refs = adapter.orders_updated(since=report.since, until=report.until)
    ids = list(dict.fromkeys(ref.external_id for ref in refs))
    report.listed = len(ids)
    size = max(1, settings.ORDERS_POLL_FETCH_BATCH)
    event_ref = f"orders_poll:{channel.pk}:{report.until.isoformat()}"
    for start in range(0, len(ids), size):
        batch = ids[start : start + size]
        orders = {order.external_id: order for order in adapter.orders_fetch(batch)}
        report.missing.extend(order_id for order_id in batch if order_id not in orders)
        for order in orders.values():
            try:
                order_apply_market(channel=channel, order=order, source="poll", event_ref=event_ref)
            except Exception:
                logger.exception(
                    "orders_poll.apply_failed", channel_id=channel.pk, order_id=order.external_id
                )
                report.failed.append(order.external_id)
                continue
            report.applied += 1
    if report.missing:
        logger.warning("orders_poll.missing", channel_id=channel.pk, order_ids=report.missing)
