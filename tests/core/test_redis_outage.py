"""Redis down: the API keeps answering from PostgreSQL, and heals when Redis is back.

Each test starts its own redis-server on a free port and points the cache at it, so it can
stop that server (never the shared one) and start it again on the same port.
"""

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
import redis
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from channels_sync.models import ChannelListing
from core.services import api_key_create, api_key_revoke
from core.services.alerts import alert_send
from inventory.models import StockLevel, StockMovement
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory

MUTATIONS = "/api/v1/stock-mutations/"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RedisServer:
    """A redis-server of this test's own (no persistence), stopped and started at will."""

    def __init__(self) -> None:
        self.port = next(port for port in range(6391, 6491) if _port_is_free(port))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is not installed"
        self.process = subprocess.Popen(  # noqa: S603 - fixed arguments, our own server
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @contextmanager
    def unreachable(self) -> Iterator[None]:
        """Cut clients off while the server keeps its data (a network partition).

        The server moves to another port and drops its client connections, then comes back.
        """
        aside = next(port for port in range(self.port + 100, 6691) if _port_is_free(port))
        admin = redis.Redis(port=self.port)
        admin.config_set("port", aside)
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.close()
        try:
            yield
        finally:
            admin = redis.Redis(port=aside)
            admin.config_set("port", self.port)
            admin.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """The cache on a redis-server this test owns (started; the test may stop it)."""
    server = RedisServer()
    server.start()
    caches = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    try:
        # Changing CACHES makes Django drop its cache connections: the next use opens ours.
        with override_settings(CACHES=caches):
            yield server
    finally:
        server.stop()


def degraded(feature: str) -> float:
    return REGISTRY.get_sample_value("syncstore_degraded_total", {"feature": feature}) or 0.0


def client_for(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def mutate(client: APIClient, sku: str, quantity: str) -> object:
    body = {"sku": sku, "warehouse": "MAIN", "type": "adjust", "quantity": quantity}
    return client.post(MUTATIONS, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "correlation_id"}
    return body


@pytest.mark.django_db(transaction=True)
def test_redis_outage_api_answers_from_postgresql_and_heals(redis_server, stocked):
    # given: Redis up, a key in use (cached), a revoked key, a listing of a stocked product
    created = api_key_create(name="shop", scopes=["read", "write", "admin"])
    revoked = api_key_create(name="old", scopes=["read"])
    api_key_revoke(api_key=revoked.api_key)
    api, old = client_for(created.key), client_for(revoked.key)
    product = stocked(10)
    listing = ChannelListingFactory(
        product=product, channel=ChannelFactory(vendor=product.vendor, push_enabled=False)
    )
    assert api.get("/api/v1/products/").status_code == 200
    assert cache.get(f"api_key:{created.api_key.prefix}") is not None
    lookups, throttles = degraded("api_key_cache"), degraded("api_key_throttle")

    # when: Redis stops
    redis_server.stop()

    # then: reads answer from PostgreSQL
    listed = api.get("/api/v1/products/")
    assert listed.status_code == 200, listed.content
    assert listed.json()["count"] == 1
    level = api.get(f"/api/v1/stock-levels/{product.sku}/")
    assert level.status_code == 200, level.content
    assert level.json()["on_hand"] == "10.000"
    # keys are still checked: revoked and unknown keys are refused
    assert_error(old.get("/api/v1/products/"), 401, "api_key_revoked")
    assert_error(client_for("ssk_00000000_nope").get("/api/v1/products/"), 401, "invalid_api_key")
    # a stock write commits; its push waits for the sweep (the listing stays dirty)
    ChannelListing.objects.filter(pk=listing.pk).update(dirty=False)
    written = mutate(api, product.sku, "-3")
    assert written.status_code == 201, written.content
    assert StockLevel.objects.get(product=product).on_hand == Decimal("7")
    assert StockMovement.objects.filter(level__product=product, kind="adjust").count() == 1
    assert ChannelListing.objects.get(pk=listing.pk).dirty is True
    # queueing a push truly needs Redis: 503 with Retry-After, in the error shape
    push = api.post(f"/api/v1/channels/{listing.channel_id}/push/")
    body = assert_error(push, 503, "service_unavailable")
    assert push["Retry-After"] == str(body["details"]["retry_after"])
    # so does a dry run (its run lock lives in Redis), through the exception handler
    dry_run = api.post(f"/api/v1/channels/{listing.channel_id}/push/?dry_run=1")
    assert_error(dry_run, 503, "service_unavailable")
    assert dry_run["Retry-After"] == "30"
    # readiness says degraded but keeps the process in service
    ready = APIClient().get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["cache"]["status"] == "error"
    assert ready.json()["checks"]["database"]["status"] == "ok"
    # each degraded feature was counted
    assert degraded("api_key_cache") > lookups
    assert degraded("api_key_throttle") > throttles

    # when: Redis is back on the same port
    redis_server.start()

    # then: the API uses the cache again by itself
    assert api.get("/api/v1/products/").status_code == 200
    assert cache.get(f"api_key:{created.api_key.prefix}") is not None
    assert APIClient().get("/health/ready").json()["status"] == "ok"
    queued = api.post(f"/api/v1/channels/{listing.channel_id}/push/")
    assert queued.status_code == 202, queued.content


@pytest.mark.django_db(transaction=True)
def test_redis_outage_throttle_fails_open(redis_server, make_client):
    api = make_client(("read",), rate_limit_per_minute=1)
    assert api.get("/api/v1/products/").status_code == 200
    assert_error(api.get("/api/v1/products/"), 429, "throttled")
    before = degraded("api_key_throttle")

    redis_server.stop()

    assert [api.get("/api/v1/products/").status_code for _ in range(3)] == [200, 200, 200]
    assert degraded("api_key_throttle") == before + 3


@pytest.mark.django_db(transaction=True)
def test_redis_outage_key_revoked_while_redis_unreachable_is_not_revived(redis_server):
    # given: a key cached while Redis answers
    created = api_key_create(name="shop", scopes=["read"])
    api = client_for(created.key)
    assert api.get("/api/v1/products/").status_code == 200

    # when: the key is revoked while Redis is out of reach (it keeps the cached active row)
    with redis_server.unreachable():
        api_key_revoke(api_key=created.api_key)
        assert_error(api.get("/api/v1/products/"), 401, "api_key_revoked")

    # then: once Redis answers again, the old entry does not let the key back in
    assert_error(api.get("/api/v1/products/"), 401, "api_key_revoked")


@pytest.mark.django_db(transaction=True)
def test_redis_outage_alerts_are_raised_unsuppressed(redis_server, log_lines):
    redis_server.stop()
    before = degraded("alert_suppression")

    alert_send(title="ERP down", text="no answer", key="erp-down")
    alert_send(title="ERP down", text="no answer", key="erp-down")

    raised = [line for line in log_lines() if line.get("event") == "alert.raised"]
    assert len(raised) == 2
    assert degraded("alert_suppression") == before + 2


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Publish tasks to the broker at `url` (not eagerly) for the duration of a block."""
    from config.celery import app

    names = ("broker_url", "broker_write_url", "task_always_eager")
    saved = {name: app.conf[name] for name in names}
    app.conf.update(broker_url=url, broker_write_url=url, task_always_eager=False)
    app._pool = app.amqp._producer_pool = None  # pools bound to the old broker
    try:
        yield
    finally:
        app.conf.update(saved)
        app._pool = app.amqp._producer_pool = None


@pytest.mark.django_db(transaction=True)
def test_redis_outage_broker_down_push_answers_503_and_writes_commit(redis_server, stocked):
    # given: the cache up, the broker (a second server of this test's own) stopped
    broker = RedisServer()
    broker.start()
    broker.stop()
    created = api_key_create(name="shop", scopes=["read", "write", "admin"])
    api = client_for(created.key)
    product = stocked(10)
    listing = ChannelListingFactory(product=product, channel=ChannelFactory(vendor=product.vendor))

    with broker_at(broker.url):
        # when: a push is asked for, then stock changes
        push = api.post(f"/api/v1/channels/{listing.channel_id}/push/")
        written = mutate(api, product.sku, "-1")

    # then: the push answers 503 (the pending key given back), the write committed
    body = assert_error(push, 503, "service_unavailable")
    assert body["details"]["channel_ids"] == [listing.channel_id]
    assert push["Retry-After"] == "30"
    assert cache.get(f"channels_sync:push_pending:{listing.channel_id}") is None
    assert written.status_code == 201, written.content
    assert StockLevel.objects.get(product=product).on_hand == Decimal("9")
    assert ChannelListing.objects.get(pk=listing.pk).dirty is True


@pytest.mark.django_db(transaction=True)
def test_redis_outage_broker_down_sweep_and_requeue_defer_to_the_next_sweep(
    redis_server, stocked, log_lines
):
    # given: a dirty listing, and the broker (a server of this test's own) stopped
    from channels_sync.models import PushAttempt
    from channels_sync.services.dirty import push_enqueue_or_defer
    from channels_sync.tasks import sweep

    broker = RedisServer()
    broker.start()
    broker.stop()
    product = stocked(10)
    listing = ChannelListingFactory(product=product, channel=ChannelFactory(vendor=product.vendor))
    ChannelListing.objects.filter(pk=listing.pk).update(dirty=True, next_push_at=None)

    with broker_at(broker.url):
        # when: the minute sweep runs, and a run queues the rest of its work
        swept = sweep()
        requeued = push_enqueue_or_defer([listing.channel_id])

    # then: neither raises (a failed task would be dead-lettered); both say what waits
    assert swept == []
    assert requeued == []
    assert ChannelListing.objects.get(pk=listing.pk).dirty is True
    assert PushAttempt.objects.count() == 0
    events = [line["event"] for line in log_lines()]
    assert events.count("push.enqueue_deferred") == 2


@pytest.mark.django_db(transaction=True)
def test_redis_outage_admin_pull_now_with_the_broker_down_says_so(redis_server, vendor, client):
    # given: an ERP connection, and the broker (a server of this test's own) stopped
    from django.contrib.auth.models import User

    from erp_mapping.models import ErpConnection, SyncRun
    from erp_mapping.services.connections import erp_connection_set

    erp_connection_set(vendor=vendor, base_url="http://127.0.0.1:9/", token="t", actor="test")
    connection = ErpConnection.objects.get(vendor=vendor)
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    broker = RedisServer()
    broker.start()
    broker.stop()

    # when: staff start a pull
    with broker_at(broker.url):
        response = client.post(
            "/admin/erp_mapping/erpconnection/",
            {"action": "pull_now", "_selected_action": [str(connection.pk)]},
            follow=True,
        )

    # then: the page says the queue is unavailable; nothing ran
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert any("task queue is unavailable" in message for message in shown), shown
    assert not SyncRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_redis_outage_admin_dry_run_now_says_the_lock_is_unavailable(
    redis_server, client, warehouse
):
    # given: a channel, staff logged in, and Redis (which holds the run lock) stopped
    from django.contrib.auth.models import User

    channel = ChannelFactory(name="Shop", warehouses=[warehouse])
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    redis_server.stop()

    # when: staff ask for a dry run
    response = client.post(
        "/admin/channels_sync/channel/",
        {"action": "dry_run_now", "_selected_action": [str(channel.pk)]},
        follow=True,
    )

    # then: the page says why nothing ran, instead of failing
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert any("could not start" in message for message in shown), shown
