"""Dirty marks: which listings need a push, and the coalesced enqueue of channel pushes.

A stock movement of a product marks every listing of that product dirty, in the movement's
transaction (`inventory.hooks`): pools are per channel, but priority, equal-split and
demand-weighted rules share a product's stock between channels, so a change anywhere can
move any channel's share. A push computes the desired quantity and sends nothing when it
equals the last pushed one, so a mark that changes nothing costs no call.

Marks raise `dirty_version`; a push clears a mark only if the version is still the one it
planned with. Listing rows are locked in primary-key order before they are marked (the same
order everywhere), so two stock transactions marking the same listings never deadlock.
"""

import contextlib
import uuid
from collections.abc import Iterable

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from channels_sync.models import ChannelListing
from channels_sync.tasks import push_channel
from core.cache import CACHE_ERRORS, cache_degraded
from core.errors import ServiceUnavailable
from inventory.hooks import StockChange
from inventory.models import StockLevel
from inventory.services.bulk import is_postgresql

logger = structlog.get_logger(__name__)

# A queued push of a channel holds this key until the task starts; later marks within that
# time ride on the queued task instead of queueing another.
PENDING_KEY = "channels_sync:push_pending:{channel_id}"
PENDING_TTL_SECONDS = 120
# A push that found its channel busy, throttled or backing off leaves one delayed retry behind
# under this key; later such answers ride on that retry instead of each starting a chain of
# their own. The value is the retry's token, so only that retry clears it. A delayed retry
# holds no pending key: marks made while it waits still queue a push at once.
WAITING_KEY = "channels_sync:push_waiting:{channel_id}"


def listings_mark_dirty_for_stock(change: StockChange) -> None:
    """Mark the listings of the changed products dirty; push their channels after commit.

    Called by `inventory` inside the writing transaction (see `ChannelsSyncConfig.ready`).
    """
    if change.level_table:
        level_table = StockLevel._meta.db_table
        products = (
            f"SELECT s.product_id FROM {level_table} s JOIN {change.level_table} c ON c.id = s.id"
        )
        params: list = []
    else:
        products = ", ".join("%s" for _ in change.product_ids)
        params = list(change.product_ids)
    channel_ids = _mark(f"product_id IN ({products})", params)
    if channel_ids:
        push_enqueue_on_commit(channel_ids)


def listings_mark_dirty(
    *, channel_id: int | None = None, listing_ids: Iterable[int] | None = None
) -> int:
    """Mark a channel's listings (or the given ones) dirty and push after commit.

    For changes that are not stock movements: a channel's warehouses or rules changed, a
    listing was added, a dead letter was retried. Returns how many listings were marked.
    """
    where, params = [], []
    if channel_id is not None:
        where.append("channel_id = %s")
        params.append(channel_id)
    if listing_ids is not None:
        ids = list(listing_ids)
        if not ids:
            return 0
        where.append(f"id IN ({', '.join('%s' for _ in ids)})")
        params.extend(ids)
    with transaction.atomic():
        channel_ids = _mark(" AND ".join(where) or "1 = 1", params, count=True)
    marked = channel_ids.pop(-1) if channel_ids else 0
    if channel_ids:
        push_enqueue_on_commit(channel_ids)
    return marked


def _mark(condition: str, params: list, *, count: bool = False) -> list[int]:
    """Lock (pk order) and mark the listings matching `condition`; return their channels.

    With `count`, the number of listings marked is appended to the list.
    """
    table = ChannelListing._meta.db_table
    now = timezone.now()
    lock = " ORDER BY id FOR UPDATE" if is_postgresql() else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET dirty = %s, dirty_version = dirty_version + 1, "
            f"dirty_since = COALESCE(dirty_since, %s), updated_at = %s "
            f"WHERE id IN (SELECT id FROM {table} WHERE {condition}{lock}) "
            f"RETURNING channel_id",
            [True, now, now, *params],
        )
        rows = cursor.fetchall()
    channel_ids = sorted({row[0] for row in rows})
    if count:
        channel_ids.append(len(rows))
    return channel_ids


def push_enqueue_on_commit(channel_ids: Iterable[int]) -> None:
    """After the commit, queue one push per channel unless one is already queued.

    The change has committed by then: when Redis is down the push waits for the sweep.
    """
    ids = list(channel_ids)
    transaction.on_commit(lambda: push_enqueue_or_defer(ids), robust=True)


def push_enqueue_or_defer(channel_ids: Iterable[int]) -> list[int]:
    """`push_enqueue`, leaving to the minute sweep what the queue cannot take now.

    For callers to whom a queue outage is no failure (a committed stock change, the sweep, a
    run requeueing the rest): the listings stay dirty and the sweep queues them once the
    queue is back. Returns the channels queued.
    """
    try:
        return push_enqueue(channel_ids)
    except ServiceUnavailable as exc:
        logger.warning("push.enqueue_deferred", channel_ids=exc.details.get("channel_ids"))
        return list(exc.details.get("queued", []))


def push_enqueue(channel_ids: Iterable[int]) -> list[int]:
    """Queue a push of each channel that has none queued yet; return the ones queued.

    The pending key is an atomic cache add shared by every process, so a burst of stock
    changes queues one task per channel. A queueing failure (cache or broker down) gives the
    key back and, once every channel was tried, raises `ServiceUnavailable` naming the
    channels not queued; their dirty marks stay, and the minute sweep pushes them. Delayed
    retries go through `push_retry_when_free`.
    """
    queued, failed = [], []
    for channel_id in channel_ids:
        key = PENDING_KEY.format(channel_id=channel_id)
        try:
            if not cache.add(key, 1, timeout=PENDING_TTL_SECONDS):
                continue
        except CACHE_ERRORS as exc:
            # Without the cache a push could not take its run lock either: leave it to the
            # sweep rather than queue one task per stock change.
            cache_degraded("push_enqueue", exc)
            failed.append(channel_id)
            continue
        try:
            push_channel.apply_async(kwargs={"channel_id": channel_id})
        except Exception:
            with contextlib.suppress(*CACHE_ERRORS):
                cache.delete(key)
            logger.exception("push.enqueue_failed", channel_id=channel_id)
            failed.append(channel_id)
            continue
        queued.append(channel_id)
    if failed:
        raise ServiceUnavailable(
            "The push could not be queued; the sweep pushes the channel once the queue is back.",
            details={"channel_ids": failed, "queued": queued},
        )
    return queued


def push_pending_clear(channel_id: int) -> None:
    """Release a channel's pending key (a push task starts: later marks queue anew).

    Without the cache the key cannot be released, but it lapses by itself
    (`PENDING_TTL_SECONDS`), so the push goes on.
    """
    try:
        cache.delete(PENDING_KEY.format(channel_id=channel_id))
    except CACHE_ERRORS as exc:
        cache_degraded("push_pending_clear", exc)


def push_retry_when_free(channel_id: int, *, countdown: float) -> bool:
    """Queue one delayed push of a busy, throttled or backing-off channel, unless one waits.

    Returns whether a retry was queued. The waiting key lives until the retry should have
    started, plus a lock lifetime: if the retry is lost with its worker, the key lapses and
    a later busy answer (or the minute sweep) queues another.
    """
    key = WAITING_KEY.format(channel_id=channel_id)
    token = uuid.uuid4().hex
    timeout = int(countdown) + 1 + settings.CHANNEL_PUSH_LOCK_SECONDS
    try:
        if not cache.add(key, token, timeout=timeout):
            return False
    except CACHE_ERRORS as exc:
        cache_degraded("push_retry_when_free", exc)  # the minute sweep queues the push
        return False
    try:
        push_channel.apply_async(
            kwargs={"channel_id": channel_id, "waiting": token}, countdown=countdown
        )
    except Exception:
        with contextlib.suppress(*CACHE_ERRORS):
            cache.delete(key)
        logger.exception("push.enqueue_failed", channel_id=channel_id)
        return False
    return True


def push_waiting_clear(channel_id: int, *, token: str) -> None:
    """Release the waiting key if it is this retry's (the retry starts: busy answers queue anew)."""
    key = WAITING_KEY.format(channel_id=channel_id)
    try:
        if cache.get(key) == token:
            cache.delete(key)
    except CACHE_ERRORS as exc:
        cache_degraded("push_waiting_clear", exc)  # the key lapses by itself
