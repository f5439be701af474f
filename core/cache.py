"""The Redis cache backend, reusing one client per connection pool.

Django's backend builds a new `redis.Redis` client object for every cache call; building
one registers a few hundred response callbacks, which on the API's hot path (key lookup,
throttle counter) costs more than the Redis round trip itself. A client is thread-safe and
holds no connection of its own (its pool does), so one per pool serves every call.
"""

from django.core.cache.backends import redis as django_redis
from django.utils.functional import cached_property


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
