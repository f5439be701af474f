"""Amazon feeds still processing, remembered per seller and marketplace.

A JSON_LISTINGS_FEED is processed by Amazon on its own time, minutes after it was created.
A feed the push stopped waiting for is still live: sending the same listings again (a new
feed, or patches) while it is would let its older quantities land after the newer ones.
So every submitted feed is remembered here until it is seen ended (`DONE`, `FATAL`,
`CANCELLED`, or unknown to Amazon), and every push of the seller asks about the remembered
feeds first, sending nothing while one is `IN_QUEUE` or `IN_PROGRESS` (see
`AmazonAdapter.push_stock`).

The feed ids live in the shared cache (Redis, `amazon:feeds:{seller}:{marketplace}`), so
every worker process sees them; the adapter holds no database state. A feed is forgotten
after `FEED_REMEMBER_SECONDS` even if it never ended: Amazon processes feeds within hours,
and a stuck entry must not hold the seller's stock back for good.

When the cache cannot be reached, the ids are kept in this process's memory instead (and
`cache.degraded` `amazon_feeds_inflight` is logged), and read from both places: a push of
the same seller in another worker process cannot see such a feed, and may send while it is
live (the ordering risk comes back for as long as the cache is down). Nothing here raises.
"""

import threading
import time
from typing import Any

from django.core.cache import caches

from core.cache import CACHE_ERRORS, cache_degraded

CACHE_KEY = "amazon:feeds:{seller_id}:{marketplace_id}"
# Amazon processes a feed within minutes, hours at worst; past a day it is given up on.
FEED_REMEMBER_SECONDS = 24 * 3600
# At most this many feeds are remembered per seller (a push waits on the first live one).
FEEDS_MAX = 50

_local_lock = threading.Lock()
_local: dict[str, dict[str, float]] = {}


def inflight_key(adapter: Any) -> str:
    credentials = adapter.credentials
    return CACHE_KEY.format(
        seller_id=str(credentials.get("seller_id", "")),
        marketplace_id=str(credentials.get("marketplace_id", "")),
    )


def feeds_inflight(adapter: Any) -> list[str]:
    """The remembered feed ids of the adapter's seller and marketplace, oldest first."""
    key = inflight_key(adapter)
    feeds = _cache_read(key)
    with _local_lock:
        feeds.update(_local.get(key, {}))
    now = time.time()
    return [
        feed_id
        for feed_id, at in sorted(feeds.items(), key=lambda item: item[1])
        if now - at < FEED_REMEMBER_SECONDS
    ]


def feed_remember(adapter: Any, feed_id: str) -> None:
    """Remember a submitted feed until it is seen ended."""
    key = inflight_key(adapter)
    feeds = _cache_read(key)
    feeds[feed_id] = time.time()
    if len(feeds) > FEEDS_MAX:
        feeds = dict(sorted(feeds.items(), key=lambda item: item[1])[-FEEDS_MAX:])
    if not _cache_write(key, feeds):
        with _local_lock:
            _local.setdefault(key, {})[feed_id] = feeds[feed_id]


def feed_forget(adapter: Any, feed_id: str) -> None:
    """Forget a feed that ended (or that Amazon does not know)."""
    key = inflight_key(adapter)
    with _local_lock:
        _local.get(key, {}).pop(feed_id, None)
    feeds = _cache_read(key)
    if feed_id in feeds:
        feeds.pop(feed_id)
        _cache_write(key, feeds)


def local_forget_all() -> None:
    """Drop the feeds kept in this process's memory (tests; a cache outage's leftovers)."""
    with _local_lock:
        _local.clear()


def _cache_read(key: str) -> dict[str, float]:
    try:
        stored = caches["default"].get(key)
    except CACHE_ERRORS as exc:
        cache_degraded("amazon_feeds_inflight", exc)
        return {}
    if not isinstance(stored, dict):
        return {}
    return {
        str(feed_id): float(at)
        for feed_id, at in stored.items()
        if isinstance(at, int | float) and not isinstance(at, bool)
    }


def _cache_write(key: str, feeds: dict[str, float]) -> bool:
    try:
        if feeds:
            caches["default"].set(key, feeds, timeout=FEED_REMEMBER_SECONDS)
        else:
            caches["default"].delete(key)
    except CACHE_ERRORS as exc:
        cache_degraded("amazon_feeds_inflight", exc)
        return False
    return True
