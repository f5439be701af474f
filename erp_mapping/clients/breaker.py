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
agent wait for each other.
"""

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pybreaker
import redis
import structlog
from django.conf import settings
from redis.exceptions import RedisError

from core.cache import cache_degraded
from erp_mapping.clients.agent import AgentUnavailable, agent_failure

logger = structlog.get_logger(__name__)

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
# For the metrics: 0 closed, 1 half-open (a trial is due or running), 2 open.
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
# A caller that finds another process's trial running waits this long (at most the reset
# timeout) before trying again.
TRIAL_WAIT_SECONDS = 5


class _RedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, whose set-up survives Redis being down.

    pybreaker catches Redis errors in every read and write (falling back to a closed
    circuit) except in the constructor's initialisation; here that one is caught too.
    """

    def _initialize_redis_state(self, state: str) -> None:
        try:
            super()._initialize_redis_state(state)
        except RedisError as exc:
            cache_degraded("erp_breaker", exc)


_clients: dict[str, redis.Redis] = {}
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at.isoformat() if self.opened_at else None,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


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
        return (opened_at or _now()) + timedelta(seconds=breaker.reset_timeout)

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
        """Read the circuit's state (Redis down: closed, as the breaker itself behaves)."""
        storage = self._storage()
        state = storage.state
        opened_at = storage.opened_at if state != CLOSED else None
        retry_at = None
        if opened_at is not None and state == OPEN:
            retry_at = opened_at + timedelta(seconds=settings.ERP_BREAKER_RESET_SECONDS)
        return BreakerState(
            vendor_id=self.vendor_id,
            state=state,
            failures=storage.counter,
            opened_at=opened_at,
            retry_at=retry_at,
            shared=self.shared,
        )

    def reset(self) -> None:
        """Close the circuit and forget its failures (a re-registered agent starts afresh)."""
        breaker = self._breaker()
        breaker.close()
        breaker._state_storage.reset_counter()


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class _StateLogger(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
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


def breaker_states(vendor_ids: list[object]) -> list[BreakerState]:
    """The circuits of these vendors (for the admin, readiness and the metrics)."""
    return [VendorBreaker(vendor_id).state() for vendor_id in vendor_ids]
