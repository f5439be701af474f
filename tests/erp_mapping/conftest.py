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
