"""Atomic windowed counters in the shared cache (throttles, rate limits).

On Redis a count is one round trip: `INCR` and `EXPIRE ... NX` pipelined. Django's cache
API would take three (`add`, then `incr`, which checks existence first). Other backends
(the embedded local-memory cache) use the portable `add` + `incr`.

A counter is a safeguard, not a reason to refuse service: when the cache is down the count is
`None` (logged and counted as a degraded `feature`) and the caller lets the request through.
"""

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from core.cache import CACHE_ERRORS, cache_degraded


def counter_incr(key: str, *, ttl: int, feature: str = "counter") -> int | None:
    """Add one to `key` (created with a `ttl`-second life) and return the new count.

    Returns `None` when the cache is unavailable, recorded as degraded `feature`.
    """
    try:
        return _incr(key, ttl)
    except CACHE_ERRORS as exc:
        cache_degraded(feature, exc)
        return None


def _incr(key: str, ttl: int) -> int:
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        return _redis_incr(cache, key, ttl)
    cache.add(key, 0, timeout=ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=ttl)
        return 1


def _redis_incr(backend: RedisCache, key: str, ttl: int) -> int:
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)
    pipeline = client.pipeline(transaction=False)
    pipeline.incr(full_key)
    pipeline.expire(full_key, ttl, nx=True)
    count, _ = pipeline.execute()
    return int(count)
