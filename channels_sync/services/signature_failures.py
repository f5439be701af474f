"""A channel's webhook signature failures, counted in the shared cache and written to the row
now and then.

A flood of badly signed webhooks must not turn into one UPDATE of the channel's row per
request (a hot row every intake and push would then wait on). Each failure adds one to a
counter in the shared cache and notes its time there; the pending count is moved to the row
(`webhook_signature_failures`, `webhook_signature_failed_at`) by at most one request every
`WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS` per channel, and by every read of the channel in the
console or the API, so what people see is right at once (Prometheus counts each failure
as it happens). When the cache is down the failure is written to the row directly: the
count stays right, and a cache outage is already a degraded mode.
"""

from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import DatabaseError
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from channels_sync.models import Channel
from core.cache import CACHE_ERRORS, cache_degraded
from core.counters import counter_incr

logger = structlog.get_logger(__name__)

COUNT_KEY = "channels:signature_failures:{channel_id}"
AT_KEY = "channels:signature_failed_at:{channel_id}"
FLUSH_KEY = "channels:signature_failures_flush:{channel_id}"
# Set while any channel may have failures pending: a read of every channel costs one cache
# call, and no query, when none has.
ANY_KEY = "channels:signature_failures_pending"
# Long enough to outlive any flush interval: a pending count is never lost to expiry.
PENDING_TTL = 24 * 3600
FEATURE = "webhook_signature_failures"


def channel_signature_failure_record(*, channel_id: int) -> None:
    """Count one refused webhook signature for the channel (cache first, row now and then).

    No lock; never raises for the cache (falls back to one UPDATE of the row). Writes the
    row at most once every `WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS` per channel.
    """
    now = timezone.now()
    if counter_incr(COUNT_KEY.format(channel_id=channel_id), ttl=PENDING_TTL, feature=FEATURE):
        cache = caches["default"]
        try:
            # Microseconds as an int: Django keeps ints raw in Redis, readable by the flush.
            micros = int(now.timestamp() * 1_000_000)
            cache.set(AT_KEY.format(channel_id=channel_id), micros, PENDING_TTL)
            cache.set(ANY_KEY, 1, PENDING_TTL)
            due = cache.add(
                FLUSH_KEY.format(channel_id=channel_id),
                1,
                timeout=max(1, int(settings.WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS)),
            )
        except CACHE_ERRORS as exc:
            cache_degraded(FEATURE, exc)
            due = True
        if due:
            try:
                channel_signature_failures_flush(channel_ids=[channel_id])
            except DatabaseError:
                # The count waits in the cache for the next flush; the refused request
                # still gets its 401, never a 500.
                logger.warning("webhook.signature_failures_flush_failed", exc_info=True)
        return
    # The cache is down: the row is the only place the count can go.
    Channel.objects.filter(pk=channel_id).update(
        webhook_signature_failures=F("webhook_signature_failures") + 1,
        webhook_signature_failed_at=now,
    )


def channel_signature_failures_flush(*, channel_ids: Iterable[int] | None = None) -> int:
    """Move the pending signature failures of these channels (all when None) to their rows.

    Each channel's pending count is taken from the cache atomically (one MULTI/EXEC), so two
    flushes at once never count a failure twice. Idempotent; a cache outage leaves the
    counts pending (nothing is lost). Returns how many failures were written.
    """
    cache = caches["default"]
    written = 0
    if channel_ids is None:
        try:
            if not cache.get(ANY_KEY):
                return written
            # Cleared before the counts are taken: a failure counted meanwhile sets it again.
            cache.delete(ANY_KEY)
        except CACHE_ERRORS as exc:
            cache_degraded(FEATURE, exc)
            return written
        ids = list(Channel.objects.values_list("pk", flat=True))
    else:
        ids = list(channel_ids)
    try:
        # One round trip finds the channels with failures pending (usually none).
        pending = cache.get_many([COUNT_KEY.format(channel_id=channel_id) for channel_id in ids])
    except CACHE_ERRORS as exc:
        cache_degraded(FEATURE, exc)
        return written
    for channel_id in ids:
        if not pending.get(COUNT_KEY.format(channel_id=channel_id)):
            continue
        try:
            count, stamp = _take(channel_id)
        except CACHE_ERRORS as exc:
            cache_degraded(FEATURE, exc)
            return written
        if not count:
            continue
        moment = datetime.fromtimestamp(stamp / 1_000_000, tz=UTC) if stamp else timezone.now()
        Channel.objects.filter(pk=channel_id).update(
            webhook_signature_failures=F("webhook_signature_failures") + count,
            # GREATEST skips NULL in PostgreSQL: a first failure sets the time.
            webhook_signature_failed_at=Greatest(F("webhook_signature_failed_at"), Value(moment)),
        )
        written += count
    return written


def _take(channel_id: int) -> tuple[int, int | None]:
    """The channel's pending count and last failure time, removed from the cache."""
    cache = caches["default"]
    count_key = COUNT_KEY.format(channel_id=channel_id)
    at_key = AT_KEY.format(channel_id=channel_id)
    if isinstance(cache, RedisCache):
        full_count = cache.make_and_validate_key(count_key)
        full_at = cache.make_and_validate_key(at_key)
        client = cache._cache.get_client(full_count, write=True)
        pipeline = client.pipeline(transaction=True)
        pipeline.get(full_count)
        pipeline.delete(full_count)
        pipeline.get(full_at)
        count, _, stamp = pipeline.execute()
        return int(count or 0), (int(stamp) if stamp else None)
    # The embedded local-memory cache lives in one process: get and delete is enough.
    count = cache.get(count_key) or 0
    cache.delete(count_key)
    return int(count), cache.get(at_key)
