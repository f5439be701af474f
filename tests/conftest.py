import io
import json
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from core.logging import json_handler
from core.sandbox import SandboxServer, SlackSandbox
from core.services import api_key_create
from inventory.models import Product, Warehouse
from inventory.services import Origin, stock_set
from tests.inventory.factories import ProductFactory, WarehouseFactory, default_vendor

TEST_ORIGIN = Origin(source="test", actor="test")


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    # Throttle windows and alert suppression live in Redis; every test starts clean.
    cache.clear()
    from erp_mapping.clients.breaker import breaker_states_forget

    breaker_states_forget()


@pytest.fixture
def vendor(db):
    return default_vendor()


@pytest.fixture
def warehouse(vendor) -> Warehouse:
    return WarehouseFactory(vendor=vendor, code="MAIN", is_default=True, is_main=True)


@pytest.fixture
def store(vendor) -> Warehouse:
    return WarehouseFactory(vendor=vendor, code="STORE")


@pytest.fixture
def stocked(warehouse) -> Callable[..., Product]:
    """Make a product holding `quantity` in a warehouse (the main one by default)."""

    def make(
        quantity: str | int = 10, *, in_warehouse: Warehouse | None = None, **fields
    ) -> Product:
        product = ProductFactory(**fields)
        stock_set(
            product=product,
            warehouse=in_warehouse or warehouse,
            quantity=Decimal(str(quantity)),
            origin=TEST_ORIGIN,
        )
        return product

    return make


@pytest.fixture
def make_client(db) -> Callable[..., APIClient]:
    """An API client authenticated with a fresh key of the given scopes."""

    def make(scopes: tuple[str, ...] = ("read", "write"), **key_fields) -> APIClient:
        created = api_key_create(name="test client", scopes=list(scopes), **key_fields)
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=created.key)
        client.api_key = created.api_key
        client.raw_key = created.key
        return client

    return make


@pytest.fixture
def api(make_client) -> APIClient:
    return make_client(("read", "write"))


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Capture the JSON log lines written while the test runs."""
    handler = json_handler()
    assert handler is not None, "the JSON log handler is not installed"
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)

    def read() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    try:
        yield read
    finally:
        handler.setStream(previous)
        root.setLevel(level)


@pytest.fixture
def slack() -> Iterator[SlackSandbox]:
    """The Slack sandbox on a local port, wired in as SLACK_WEBHOOK_URL."""
    app = SlackSandbox()
    with (
        SandboxServer(app) as server,
        override_settings(SLACK_WEBHOOK_URL=server.url + app.webhook_path),
    ):
        app.server = server
        yield app


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[object]:
    """A real Celery worker thread consuming every queue from the Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from config.celery import app

    queues = list(settings.QUEUE_NAMES)

    with app.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_purge(queue)
    app.conf.task_always_eager = False
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            loglevel="WARNING",
            queues=queues,
            shutdown_timeout=10,
        ) as worker:
            yield worker
    finally:
        app.conf.task_always_eager = True
