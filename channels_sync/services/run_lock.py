"""A channel's run lock: one push run per channel, held only while the run is alive.

The lock is a key in the shared cache with a short lifetime (`CHANNEL_PUSH_LOCK_SECONDS`),
added atomically and renewed by a heartbeat thread every third of that lifetime for as long
as the run goes on, whatever the run is doing (a slow call, a throttle wait, a row lock
held by a long stock sync). A worker that dies mid-run (SIGKILL, out of memory, the task's
hard time limit) takes its heartbeat with it, so its lock lapses within one lifetime and the
next push proceeds. A run whose lock was lost (it lapsed while the process was stalled, and
another run took it) notices at its next call and stops.

Renewal and release compare the token first and then act: not one atomic step, but the lock
is never near its expiry while its heartbeat lives, so the gap between the two cannot hand
the key to another run in practice.
"""

import threading
import uuid

import structlog
from django.core.cache import caches

logger = structlog.get_logger(__name__)


class RunLock:
    """A lock in the shared cache, renewed by a heartbeat thread while it is held."""

    def __init__(self, key: str, *, seconds: int) -> None:
        self.key = key
        self.seconds = max(int(seconds), 3)
        self.token = uuid.uuid4().hex
        # The backend object itself, not the per-thread proxy: the heartbeat thread shares
        # its connection pool (thread-safe) instead of opening connections of its own.
        self._cache = caches["default"]
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; start renewing it. False: another run has it."""
        if not self._cache.add(self.key, self.token, timeout=self.seconds):
            return False
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"run-lock {self.key}", daemon=True
        )
        self._thread.start()
        return True

    def held(self) -> bool:
        """Whether the lock is still ours (one cache read)."""
        if self._lost.is_set():
            return False
        if self._cache.get(self.key) != self.token:
            self._lost.set()
            return False
        return True

    def release(self) -> None:
        """Stop renewing and give the lock back (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._cache.get(self.key) == self.token:
                self._cache.delete(self.key)
        except Exception:
            # The lock lapses by itself within its lifetime.
            logger.exception("push.lock_release_failed", key=self.key)

    def _heartbeat(self) -> None:
        interval = self.seconds / 3
        while not self._stop.wait(interval):
            try:
                if self._cache.get(self.key) != self.token:
                    self._lost.set()
                    logger.warning("push.lock_lost", key=self.key)
                    return
                self._cache.touch(self.key, self.seconds)
            except Exception:
                # A cache hiccup: try again at the next beat; the lock outlives two misses.
                logger.exception("push.lock_renew_failed", key=self.key)
