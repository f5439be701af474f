"""The Redis cache backend, reusing one client per connection pool.

Django's backend builds a new `redis.Redis` client object for every cache call; building
one registers a few hundred response callbacks, which on the API's hot path (key lookup,
throttle counter) costs more than the Redis round trip itself. A client is thread-safe and
holds no connection of its own (its pool does), so one per pool serves every call.

When Redis is down the cache raises (`CACHE_ERRORS`). Callers for whom the cache is an
optimisation (key lookup, throttles, alert suppression) catch that and go on without it,
calling `cache_degraded`; where Redis is truly needed the error reaches the API's exception
handler, which answers 503 `service_unavailable`.
"""

import structlog
from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from core.metrics import DEGRADED

logger = structlog.get_logger(__name__)


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    @cached_property
    def _cache(self) -> RedisCacheClient:
        return RedisCacheClient(self._servers, **self._options)


# What the Redis cache raises when Redis cannot be reached or answers with an error (redis-py
# wraps socket errors and timeouts in its own).
CACHE_ERRORS: tuple[type[Exception], ...] = (RedisError,)
# What publishing a task raises when the broker cannot be reached.
QUEUE_ERRORS: tuple[type[Exception], ...] = (OperationalError, *CACHE_ERRORS)


def cache_degraded(feature: str, exc: Exception) -> None:
    """Record that `feature` went on without the cache: a structured warning and a count."""
    DEGRADED.labels(feature).inc()
    logger.warning("cache.degraded", feature=feature, error=f"{type(exc).__name__}: {exc}"[:300])
