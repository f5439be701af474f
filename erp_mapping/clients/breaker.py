"""The circuit breaker of each vendor's ERP agent: pybreaker, its state shared through Redis.

Every call to a vendor's agent runs through the vendor's breaker (`agent_client_for`). After
`ERP_BREAKER_FAIL_MAX` failures in a row (no answer, 5xx, 408, 429: `agent_failure`) the
circuit opens: for `ERP_BREAKER_RESET_SECONDS` no call is made and `AgentUnavailable` says
when to try again (pybreaker keeps the opening time in Redis to the second, so the wait is
up to a second shorter). Then one trial call is let through (half-open): its success closes the
circuit, its failure opens it again for another period.

The state (state, failure count, opening time) lives in Redis (`CircuitRedisStorage`), so
every worker process sees the same circuit: failures in one open it for all. Only one trial
runs at a time across processes (a Redis key taken with SET NX); the others wait as if the
circuit were still open. Without Redis configured (the embedded default) the state is per
process (`CircuitMemoryStorage`). When Redis fails, pybreaker falls back to a closed circuit
and calls go through: a Redis outage never stops the sync (the jobs' own backoff still
spaces the retries), it only loses the sharing.

A breaker object is built for each call (a few Redis round trips): pybreaker holds its lock
for the whole call, so one long-lived object per vendor would make a process's calls to one
agent wait for each other. An open circuit whose opening time is missing (a lost key) lets
its trial through, as pybreaker itself does.

What the admin, readiness, the metrics and the sweep show (`breaker_states`) is read for all
vendors in one pipelined round trip on a client with a short timeout
(`STATUS_TIMEOUT_SECONDS`), and kept per process for `STATES_CACHE_SECONDS`: a Redis that
accepts connections and never answers costs those pages a quarter of a second, not seconds
per vendor. Redis errors are logged as one warning (`cache.degraded`), never a traceback.
"""

import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
import redis
import structlog
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from core.cache import cache_degraded
from erp_mapping.clients.agent import AgentUnavailable, agent_failure

logger = structlog.get_logger(__name__)

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
# For the metrics: 0 closed, 1 half-open (a trial is due or running), 2 open.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
# A caller that finds another process's trial running waits this long (at most the reset
# timeout) before trying again.
TRIAL_WAIT_SECONDS = 5
# The state pages' reads: one round trip for every vendor, this long at most, kept this long.
STATUS_TIMEOUT_SECONDS = 0.25
STATES_CACHE_SECONDS = 2.0


class _QuietLogger:
    """What pybreaker's storage logs a Redis error with: one warning and a count (the
    degradation is expected and handled), not a traceback per read."""

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        cache_degraded("erp_breaker", exc if exc is not None else RedisError(message))

    error = warning = exception


class _RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, whose set-up survives Redis being down.

    pybreaker catches Redis errors in every read and write (falling back to a closed
    circuit) except in the constructor's initialisation; here that one is caught too, and
    the errors are logged without a traceback.
    """

    logger = _QuietLogger()

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except RedisError as exc:
            cache_degraded("erp_breaker", exc)


_clients: dict[str, redis.Redis] = {}
_status_clients: dict[str, redis.Redis] = {}
_states: dict[str, tuple[float, "BreakerState"]] = {}
_memory: dict[str, pybreaker.CircuitMemoryStorage] = {}
_trials: dict[str, tuple[str, datetime]] = {}
_lock = threading.Lock()


def _redis() -> redis.Redis:
    """One client per Redis URL (bytes answers, as pybreaker's storage needs)."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        options = settings.CACHES["default"].get("OPTIONS", {})
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=options.get("socket_connect_timeout", 2.0),
            socket_timeout=options.get("socket_timeout", 2.0),
        )
        _clients[url] = client
    return client


def _status_redis() -> redis.Redis:
    """The client of the state reads: a short timeout and no retries (see the module)."""
    url = settings.REDIS_URL
    client = _status_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=STATUS_TIMEOUT_SECONDS,
            socket_timeout=STATUS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        _status_clients[url] = client
    return client


def _namespace(vendor_id: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "syncstore"
    return f"{prefix}:erp_breaker:{vendor_id}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class BreakerState:
    """A vendor's circuit as the admin, readiness and metrics show it."""

    vendor_id: str
    state: str
    failures: int
    opened_at: datetime | None
    retry_at: datetime | None  # when an open circuit lets its trial through
    shared: bool  # the state lives in Redis (False: this process only)
    error: str = ""  # Redis could not be read: shown closed, as the breaker behaves

    def as_dict(self) -> dict[str, Any]:
        shown = {
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }
        if self.error:
            shown["error"] = self.error
        return shown


class VendorBreaker:
    """The circuit breaker of one vendor's agent (see the module)."""

    def __init__(self, vendor_id: object) -> None:
        self.vendor_id = str(vendor_id)
        self.namespace = _namespace(self.vendor_id)
        self.shared = bool(settings.REDIS_URL)

    def _storage(self) -> pybreaker.CircuitBreakerStorage:
        if self.shared:
            return _RedisStorage(CLOSED, _redis(), namespace=self.namespace)
        with _lock:
            storage = _memory.get(self.vendor_id)
            if storage is None:
                storage = _memory[self.vendor_id] = pybreaker.CircuitMemoryStorage(CLOSED)
            return storage

    def _breaker(self) -> pybreaker.CircuitBreaker:
        return pybreaker.CircuitBreaker(
            fail_max=settings.ERP_BREAKER_FAIL_MAX,
            reset_timeout=settings.ERP_BREAKER_RESET_SECONDS,
            state_storage=self._storage(),
            # What is not the agent being unwell (a 4xx refusal, an error of ours) counts
            # as the agent having answered.
            exclude=[lambda exc: not agent_failure(exc)],
            name=f"erp-agent:{self.vendor_id}",
            # The call that trips the circuit was made: its caller sees its real error.
            throw_new_error_on_trip=False,
            listeners=[_StateLogger()],
        )

    def _retry_at(self, breaker: pybreaker.CircuitBreaker) -> datetime:
        opened_at = breaker._state_storage.opened_at
        if opened_at is None:
            # Open without an opening time (the key was lost): the timeout counts as
            # elapsed and a trial may go (pybreaker's rule), or the circuit never closes.
            return _now()
        return opened_at + timedelta(seconds=breaker.reset_timeout)

    def call(self, send: Any) -> Any:
        """Run `send()` through the circuit, or raise `AgentUnavailable` without running it."""
        breaker = self._breaker()
        state = breaker.current_state
        if state == CLOSED:
            try:
                return breaker.call(send)
            except pybreaker.CircuitBreakerError:
                # Another process opened the circuit between our read and the call.
                raise self._unavailable(self._retry_at(breaker)) from None
        retry_at = self._retry_at(breaker)
        if state == OPEN and _now() < retry_at:
            raise self._unavailable(retry_at)
        # Open past its timeout, or half-open: one trial at a time, across processes.
        token = self._trial_take()
        if token is None:
            wait = min(TRIAL_WAIT_SECONDS, settings.ERP_BREAKER_RESET_SECONDS)
            raise self._unavailable(_now() + timedelta(seconds=max(wait, 1)), trial=True)
        try:
            return breaker.call(send)
        except pybreaker.CircuitBreakerError:
            raise self._unavailable(self._retry_at(breaker)) from None
        finally:
            self._trial_release(token)

    def _unavailable(self, retry_at: datetime, *, trial: bool = False) -> AgentUnavailable:
        what = "its trial call is running" if trial else "the circuit is open"
        return AgentUnavailable(
            f"the agent of vendor {self.vendor_id} is unavailable ({what}); "
            f"next try at {retry_at.isoformat(timespec='seconds')}",
            retry_at=retry_at,
        )

    # --- the trial ---

    def _trial_ttl(self) -> int:
        return int(settings.ERP_AGENT_HTTP_TIMEOUT_SECONDS) + 5

    def _trial_take(self) -> str | None:
        token = uuid.uuid4().hex
        if self.shared:
            try:
                key, ttl = f"{self.namespace}:trial", self._trial_ttl()
                taken = _redis().set(key, token, nx=True, ex=ttl)
            except RedisError as exc:
                cache_degraded("erp_breaker", exc)
                return token  # no sharing without Redis: this process tries
            return token if taken else None
        with _lock:
            held = _trials.get(self.vendor_id)
            if held is not None and held[1] > _now():
                return None
            _trials[self.vendor_id] = (token, _now() + timedelta(seconds=self._trial_ttl()))
        return token

    def _trial_release(self, token: str) -> None:
        if self.shared:
            try:
                _redis().eval(_RELEASE, 1, f"{self.namespace}:trial", token)
            except RedisError as exc:
                cache_degraded("erp_breaker", exc)  # the key lapses by itself
            return
        with _lock:
            if _trials.get(self.vendor_id, ("",))[0] == token:
                del _trials[self.vendor_id]

    # --- state ---

    def state(self) -> BreakerState:
        """Read the circuit's state now (Redis down: closed, as the breaker itself behaves)."""
        return breaker_states([self.vendor_id], fresh=True)[0]

    def reset(self) -> None:
        """Close the circuit and forget its failures (a re-registered agent starts afresh)."""
        breaker = self._breaker()
        breaker.close()
        breaker._state_storage.reset_counter()
        _states.pop(self.vendor_id, None)


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class _StateLogger(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        # This process's cached state of the vendor is stale now.
        _states.pop(cb.name.removeprefix("erp-agent:"), None)
        # Every breaker object notices a change it did not make too; log only real moves.
        if old_state is None or old_state.name == new_state.name:
            return
        log = logger.warning if new_state.name == OPEN else logger.info
        log(
            "erp_breaker.state_changed",
            breaker=cb.name,
            old_state=old_state.name,
            new_state=new_state.name,
        )


def vendor_breaker(vendor_id: object) -> VendorBreaker:
    """The circuit breaker of the vendor's agent."""
    return VendorBreaker(vendor_id)


def breaker_states_forget() -> None:
    """Drop this process's cached states (tests; a state change drops its vendor's)."""
    _states.clear()


def breaker_states(vendor_ids: list[object], *, fresh: bool = False) -> list[BreakerState]:
    """The circuits of these vendors (for the admin, readiness, metrics and the sweep).

    One pipelined read for all of them on the short-timeout client; the answers are kept
    per process for `STATES_CACHE_SECONDS` (`fresh`: read now). Redis failing: every
    circuit shows closed (as the breaker behaves) with the error.
    """
    ids = [str(vendor_id) for vendor_id in vendor_ids]
    if not settings.REDIS_URL:
        return [_memory_state(vendor_id) for vendor_id in ids]
    clock = time.monotonic()
    found: dict[str, BreakerState] = {}
    if not fresh:
        for vendor_id in ids:
            cached = _states.get(vendor_id)
            if cached is not None and cached[0] > clock:
                found[vendor_id] = cached[1]
    wanted = [vendor_id for vendor_id in ids if vendor_id not in found]
    if wanted:
        read = _redis_states(wanted)
        expires = time.monotonic() + STATES_CACHE_SECONDS
        for vendor_id, state in read.items():
            _states[vendor_id] = (expires, state)
        found.update(read)
    return [found[vendor_id] for vendor_id in ids]


def _redis_states(vendor_ids: list[str]) -> dict[str, BreakerState]:
    names = ("state", "fail_counter", "opened_at")
    try:
        pipe = _status_redis().pipeline(transaction=False)
        for vendor_id in vendor_ids:
            for name in names:
                pipe.get(f"{_namespace(vendor_id)}:pybreaker:{name}")
        values = pipe.execute()
    except RedisError as exc:
        cache_degraded("erp_breaker", exc)
        error = f"{type(exc).__name__}: {exc}"[:200]
        return {v: BreakerState(v, CLOSED, 0, None, None, True, error) for v in vendor_ids}
    states = {}
    for index, vendor_id in enumerate(vendor_ids):
        raw_state, raw_count, raw_opened = values[index * 3 : index * 3 + 3]
        state = raw_state.decode() if raw_state else CLOSED
        opened_at = None
        if raw_opened and state != CLOSED:
            opened_at = datetime.fromtimestamp(int(raw_opened), tz=UTC)
        states[vendor_id] = _shown(vendor_id, state, int(raw_count or 0), opened_at, True)
    return states


def _memory_state(vendor_id: str) -> BreakerState:
    storage = VendorBreaker(vendor_id)._storage()
    state = storage.state
    opened_at = storage.opened_at if state != CLOSED else None
    return _shown(vendor_id, state, storage.counter, opened_at, False)


def _shown(
    vendor_id: str, state: str, failures: int, opened_at: datetime | None, shared: bool
) -> BreakerState:
    retry_at = None
    if state == OPEN:
        # No opening time: the trial is due now (see `VendorBreaker._retry_at`).
        retry_at = (
            opened_at + timedelta(seconds=settings.ERP_BREAKER_RESET_SECONDS)
            if opened_at is not None
            else _now()
        )
    return BreakerState(vendor_id, state, failures, opened_at, retry_at, shared)
