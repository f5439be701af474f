import io

import pytest
from django.core.management import call_command
from django.test import override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from inventory.models import StockLevel

pytestmark = pytest.mark.django_db


def test_live_is_ok():
    response = APIClient().get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_and_cache():
    response = APIClient().get("/health/ready")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert set(checks) == {"database", "cache"}  # eager Celery: no broker to check
    assert all(check["status"] == "ok" for check in checks.values())


def test_ready_checks_the_broker_when_tasks_go_to_one(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    response = APIClient().get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"]["status"] == "ok"


def test_ready_is_degraded_but_serving_when_the_broker_is_down(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = APIClient().get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["status"] == "error"
    assert body["checks"]["database"]["status"] == "ok"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_requests_movements_and_errors(
    api, stocked, django_capture_on_commit_callbacks
):
    product = stocked(1)
    StockLevel.objects.filter(product=product).update(min_stock=5)
    before = {
        "reads": sample(
            "syncstore_http_request_duration_seconds_count",
            method="GET",
            route="api/v1/stock-levels/",
            status="200",
        ),
        "adjusts": sample("syncstore_stock_movements_total", kind="adjust"),
        "not_found": sample("syncstore_api_errors_total", code="product_not_found"),
    }

    api.get("/api/v1/stock-levels/")
    api.get("/api/v1/stock-levels/NOPE/")
    with django_capture_on_commit_callbacks(execute=True):  # counted once committed
        api.post(
            "/api/v1/stock-mutations/",
            {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "2"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="m-1",
        )
    response = APIClient().get("/metrics")

    assert response.status_code == 200
    assert (
        sample(
            "syncstore_http_request_duration_seconds_count",
            method="GET",
            route="api/v1/stock-levels/",
            status="200",
        )
        == before["reads"] + 1
    )
    assert sample("syncstore_stock_movements_total", kind="adjust") == before["adjusts"] + 1
    assert sample("syncstore_api_errors_total", code="product_not_found") == before["not_found"] + 1
    text = response.content.decode()
    assert "syncstore_stock_levels_below_min 1.0" in text
    assert "syncstore_dead_letters_open 0.0" in text
    assert "syncstore_reservations_active 0.0" in text


def test_metrics_can_require_a_bearer_token():
    with override_settings(METRICS_BEARER_TOKEN="m-token"):
        assert APIClient().get("/metrics").status_code == 401
        assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer m-token").status_code == 200


def test_schema_is_valid_openapi_without_warnings(tmp_path):
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stderr=io.StringIO(),
    )


def test_every_api_operation_documents_its_errors():
    schema = APIClient().get("/api/schema/?format=json").json()
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    ]
    assert len(operations) >= 16
    for path, method, operation in operations:
        responses = operation["responses"]
        for status in ("401", "403", "429"):
            assert status in responses, (path, method, status)
            assert "Error codes:" in responses[status]["description"]
        agent_only = path in (
            "/api/v1/erp/agents/heartbeat/",
            "/api/v1/erp/agents/callback/",
        ) or path.startswith("/api/v1/erp/ingest/")
        expected = [{"ErpAgentToken": []}] if agent_only else [{"ApiKeyAuth": []}]
        assert operation.get("security") == expected, (path, method)
    mutation = schema["paths"]["/api/v1/stock-mutations/"]["post"]
    assert "insufficient_stock" in mutation["responses"]["409"]["description"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in mutation["parameters"])


def test_swagger_ui_is_served():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
