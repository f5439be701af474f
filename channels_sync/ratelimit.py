"""A token bucket per channel, shared by every worker process (Redis), for outbound calls.

On Redis the bucket is one Lua script (refill by elapsed time on the server's clock, take a
token or say how long to wait), so all processes draw from the same bucket atomically. The
embedded default (local-memory cache, one process) keeps the buckets in memory.
"""

import threading
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst (capacity), tokens wanted.
# Returns the seconds to wait (as a string: Lua numbers lose their fraction on the way out);
# "0" means the tokens were taken.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= wanted then
  tokens = tokens - wanted
else
  wait = (wanted - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return tostring(wait)
"""

_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}


def _take_local(key: str, rate: float, burst: float, wanted: float) -> float:
    now = time.monotonic()
    with _local_lock:
        tokens, at = _local_buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - at) * rate)
        wait = 0.0
        if tokens >= wanted:
            tokens -= wanted
        else:
            wait = (wanted - tokens) / rate
        _local_buckets[key] = (tokens, now)
    return wait


def _take_redis(backend: RedisCache, key: str, rate: float, burst: float, wanted: float) -> float:
    full_key = backend.make_and_validate_key(key)
    client = backend._cache.get_client(full_key, write=True)
    return float(client.eval(_TAKE, 1, full_key, rate, burst, wanted))


def rate_limit_take(key: str, *, rate: float, burst: int, wanted: int = 1) -> float:
    """Try to take `wanted` tokens; return 0 when taken, else the seconds to wait first."""
    rate = max(float(rate), 0.001)
    burst_f = float(max(burst, wanted, 1))
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return _take_redis(backend, f"ratelimit:{key}", rate, burst_f, float(wanted))
    return _take_local(key, rate, burst_f, float(wanted))


def rate_limit_wait(key: str, *, rate: float, burst: int, wanted: int = 1) -> float:
    """Block until the tokens are taken; return the seconds spent waiting."""
    waited = 0.0
    while True:
        wait = rate_limit_take(key, rate=rate, burst=burst, wanted=wanted)
        if wait <= 0:
            return waited
        time.sleep(wait)
        waited += wait
