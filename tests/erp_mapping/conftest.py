from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from core.sandbox import SandboxServer
from erp_mapping.agent_server import AgentServer
from erp_mapping.sandbox import ErpSandbox
from erp_mapping.services.agents import agent_register
from erp_mapping.services.connections import erp_connection_set
from orders.models import Order
from orders.services import OrderLineInput, order_create
from tests.erp_mapping.sync_support import API

TOKEN = "pull-test-token"


@pytest.fixture
def archive_dir(tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "erp_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "archive")},
        },
    }
    return tmp_path / "archive"


@pytest.fixture
def erp(vendor, warehouse, archive_dir, settings):
    """The ERP sandbox on a local port, as the default vendor's ERP connection."""
    settings.ERP_PULL_RETRY_DELAYS = [0.01, 0.01, 0.01]
    app = ErpSandbox(token=TOKEN, skus=0)
    with SandboxServer(app) as server:
        erp_connection_set(vendor=vendor, base_url=server.url, token=TOKEN, actor="test")
        yield app


@pytest.fixture
def agent_erp(vendor):
    """The ERP agent served on a local port, registered (online) as the vendor's agent."""
    from erp_mapping.agent_server import AgentServer
    from erp_mapping.models import ErpAgent
    from erp_mapping.services.agents import agent_register
    from tests.erp_mapping.reconcile_helpers import SECRET

    app = AgentServer(stock={"secret": SECRET})
    with SandboxServer(app) as server:
        agent = agent_register(vendor=vendor, agent_url=server.url, erp_type="convex").agent
        agent.outbound_secret = SECRET
        agent.status = ErpAgent.Status.ONLINE
        agent.save()
        app.server = server
        app.agent = agent
        yield app


# --- order -> ERP sync ---


@pytest.fixture
def sync_settings(settings):
    settings.ERP_SYNC_RETRY_BASE_SECONDS = 0.01
    settings.ERP_SYNC_RETRY_MAX_SECONDS = 0.05
    settings.ERP_AGENT_HTTP_TIMEOUT_SECONDS = 2.0
    settings.ERP_BREAKER_FAIL_MAX = 100
    settings.ERP_BREAKER_RESET_SECONDS = 1
    return settings


@pytest.fixture
def agent(vendor, sync_settings) -> Iterator[AgentServer]:
    """The default vendor's agent, served over HTTP; its callbacks reach the API in process."""
    app = AgentServer(orders={"callback_client": APIClient()})
    with SandboxServer(app) as server:
        registered = agent_register(
            vendor=vendor, agent_url=f"{server.url}/agent", erp_type="convex"
        )
        app.credentials_add(secret=registered.outbound_secret, callback_token=registered.token)
        app.server = server
        app.registered = registered
        yield app


@pytest.fixture
def place(stocked, django_capture_on_commit_callbacks) -> Callable[..., Order]:
    """Create a confirmed API order (running its after-commit hooks, as a commit would)."""
    product = stocked(100)
    counter = iter(range(1, 10_000))

    def make(quantity: int = 1) -> Order:
        with django_capture_on_commit_callbacks(execute=True):
            return order_create(
                vendor=product.vendor,
                order_number=f"T-{next(counter)}",
                lines=[
                    OrderLineInput(
                        sku=product.sku, quantity=Decimal(quantity), unit_price=Decimal("9.5")
                    )
                ],
                actor=API,
                customer={"name": "Ann"},
                amount=Decimal("9.50"),
                currency="EUR",
            )

    return make
