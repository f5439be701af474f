import pytest

from core.sandbox import SandboxServer
from erp_mapping.sandbox import ErpSandbox
from erp_mapping.services.connections import erp_connection_set

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
