"""A push worker killed mid-run, or stopped by its time limit: the channel still converges.

These start real `celery worker` processes (queue `push`) against the Redis broker and the
test database, point a channel at an in-process sandbox that answers slowly enough for a run
to take seconds, and cut the run short.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from channels_sync import tasks
from channels_sync.adapters import adapter_class
from channels_sync.models import ChannelListing, PushAttempt
from channels_sync.selectors import listings_to_push, plan
from channels_sync.services.push import ROUND_CALLS, RUN_LOCK_KEY
from config.celery import app
from inventory.services import Origin, stock_set
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory

ROOT = Path(__file__).resolve().parents[2]
LISTINGS = 120
BATCH = 5  # 24 calls
LATENCY = 0.2  # seconds per call: a run takes about 5 s
LOCK_SECONDS = 3

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _worker(log: Path, *, pool: str = "solo", **env) -> subprocess.Popen:
    """A `celery worker` process on the push queue, reading the test database."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "SLACK_WEBHOOK_URL": "",
        "DJANGO_LOG_LEVEL": "WARNING",
        "CHANNEL_PUSH_LOCK_SECONDS": str(LOCK_SECONDS),
        **env,
    }
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "push"]
    command += ["-P", pool, "-c", "1", "--without-mingle", "--without-gossip"]
    command += ["--loglevel", "WARNING", "-n", f"push-{time.monotonic_ns()}@%h"]
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own worker
            command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
        )


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.fixture
def broker():
    """The push queue empty, tasks sent to the broker (not run inline) while the test runs."""

    def purge() -> None:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("push")

    purge()
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = True
        purge()


@pytest.fixture
def slow_channel(lazada, wire, warehouse):
    """A Lazada channel of LISTINGS dirty listings, BATCH per call, each call LATENCY long."""
    products = []
    for n in range(LISTINGS):
        product = ProductFactory()
        stock_set(
            product=product,
            warehouse=warehouse,
            quantity=Decimal(10 + n),
            origin=Origin(source="test", actor="test"),
        )
        products.append(product)
    channel = wire(
        lazada, "lazada", warehouses=[warehouse], products=products, dirty=True, batch_size=BATCH
    )
    lazada.app.configure(latency=LATENCY)
    return channel


def _converged(server, channel) -> bool:
    if ChannelListing.objects.filter(channel=channel, dirty=True).exists():
        return False
    cls = adapter_class(channel.type)
    rows = listings_to_push(channel, include_clean=True, limit=LISTINGS)
    return all(
        server.app.quantity(cls.keys_from_listing(item.row)) == item.quantity
        for item in plan(channel, rows)
    )


def _sent_rows(channel) -> int:
    return PushAttempt.objects.filter(channel=channel).exclude(outcome="dry_run").count()


def test_push_worker_killed_mid_run_converges_with_every_call_recorded(
    lazada, slow_channel, broker, tmp_path
):
    channel = slow_channel
    log = tmp_path / "workers.log"
    first = _worker(log)
    try:
        # given a push under way on a worker
        tasks.push_channel.apply_async(kwargs={"channel_id": channel.pk})
        wait_for(lambda: len(lazada.app.call_times) >= 8, timeout=60)
        # when the worker is killed mid-run
        first.send_signal(signal.SIGKILL)
        first.wait()
        calls_at_kill = len(lazada.app.call_times)
        assert calls_at_kill < LISTINGS // BATCH
        # and a new worker starts, with the minute sweep (played here every second) queueing
        # pushes of channels left dirty, as beat does
        second = _worker(log)
        started = time.monotonic()
        try:

            def swept_and_converged() -> bool:
                tasks.sweep.apply_async()
                time.sleep(1)
                return _converged(lazada, channel)

            wait_for(swept_and_converged, timeout=120)
            converged_after = time.monotonic() - started
        finally:
            _stop(second)
    finally:
        _stop(first)

    # then the channel converged once the dead run's lock lapsed (seconds, not 15 minutes)
    assert converged_after < 120
    # every call the marketplace saw has its row (and at most a round more: rows committed
    # ahead of calls the dead run never made, marked interrupted with the call in flight)
    calls = len(lazada.app.call_times)
    rows = _sent_rows(channel)
    assert calls <= rows <= calls + ROUND_CALLS
    assert not PushAttempt.objects.filter(channel=channel, outcome="sending").exists()
    interrupted = PushAttempt.objects.filter(channel=channel, outcome="interrupted").count()
    assert 1 <= interrupted <= ROUND_CALLS
    # and only the batch in flight at the kill was sent twice
    sent = Counter(tuple(sorted(keys.items())) for keys, _ in lazada.app.updates)
    assert len(sent) == LISTINGS
    assert sum(count - 1 for count in sent.values()) <= BATCH


def test_push_run_past_its_soft_time_limit_gives_its_lock_back_and_goes_on(
    lazada, slow_channel, broker, tmp_path
):
    channel = slow_channel
    log = tmp_path / "worker.log"
    # given push runs limited to 2 s (soft) and 4 s (hard), on the prefork pool that
    # enforces them
    worker = _worker(
        log,
        pool="prefork",
        CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS="2",
        CHANNEL_PUSH_TIME_LIMIT_SECONDS="4",
    )
    try:
        # when a push that needs about 5 s runs, queued by the worker's sweep (a task message
        # carries the time limits of the process that queued it); after that, the runs
        # queue their own rest
        tasks.sweep.apply_async()
        wait_for(lambda: _converged(lazada, channel), timeout=90)
    finally:
        _stop(worker)

    # then runs were stopped by the soft limit, each giving the lock back to the next
    assert b'"push.time_limit"' in log.read_bytes()

    assert cache.get(RUN_LOCK_KEY.format(channel_id=channel.pk)) is None
    calls = len(lazada.app.call_times)
    assert calls <= _sent_rows(channel) <= calls + ROUND_CALLS
    assert not PushAttempt.objects.filter(channel=channel, outcome="sending").exists()
