"""The channel run lock: short-lived, renewed while its run lives, lapsing when it dies."""

import time

from django.core.cache import cache

from channels_sync.services.run_lock import RunLock

KEY = "channels_sync:push_lock:test"


def test_run_lock_is_exclusive_and_released():
    first, second = RunLock(KEY, seconds=3), RunLock(KEY, seconds=3)

    assert first.acquire()
    assert not second.acquire()
    first.release()

    assert cache.get(KEY) is None
    assert second.acquire()
    second.release()


def test_run_lock_heartbeat_keeps_it_past_its_lifetime():
    # given a lock of 3 seconds whose run goes on for 4.5
    lock = RunLock(KEY, seconds=3)
    assert lock.acquire()
    try:
        time.sleep(4.5)
        # then it is still held: the heartbeat renewed it
        assert lock.held()
        assert not RunLock(KEY, seconds=3).acquire()
    finally:
        lock.release()


def test_run_lock_lapses_within_its_lifetime_once_its_heartbeat_stops():
    # given a held lock whose process stops renewing it (what SIGKILL does to the heartbeat)
    lock = RunLock(KEY, seconds=3)
    assert lock.acquire()
    lock._stop.set()
    lock._thread.join()

    # when its lifetime passes
    time.sleep(3.5)

    # then another run can take it, and the old run knows it lost it
    other = RunLock(KEY, seconds=3)
    assert other.acquire()
    assert not lock.held()
    lock.release()  # leaves the new holder's lock alone
    assert cache.get(KEY) == other.token
    other.release()
