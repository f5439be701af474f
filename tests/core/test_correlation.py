import uuid
from decimal import Decimal

import pytest
import structlog
from rest_framework.test import APIClient

from core.correlation import correlation_scope, get_correlation_id
from core.http import OutboundError, http_session
from core.logging import REDACTED, redact_value
from core.sandbox import SandboxServer, SlackSandbox
from inventory.models import StockLevel
from inventory.services import stock_set
from tests.conftest import TEST_ORIGIN
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory, WarehouseFactory, default_vendor


@pytest.mark.django_db
def test_given_correlation_id_is_echoed_and_logged(log_lines):
    response = APIClient().get("/health/live", HTTP_X_CORRELATION_ID="abc-123")

    assert response["X-Correlation-ID"] == "abc-123"
    finished = [line for line in log_lines() if line["event"] == "request_finished"]
    assert finished[-1]["correlation_id"] == "abc-123"


@pytest.mark.django_db
def test_request_id_header_is_accepted():
    response = APIClient().get("/health/live", HTTP_X_REQUEST_ID="req-9")
    assert response["X-Correlation-ID"] == "req-9"


@pytest.mark.django_db
@pytest.mark.parametrize("given", [None, "", "bad id with spaces", "x" * 200, "a\nb"])
def test_missing_or_unsafe_id_is_replaced_by_a_uuid(given):
    headers = {} if given is None else {"HTTP_X_CORRELATION_ID": given}
    response = APIClient().get("/health/live", **headers)
    uuid.UUID(response["X-Correlation-ID"])


def test_correlation_scope_binds_and_restores():
    assert get_correlation_id() is None
    with correlation_scope("job-1") as cid:
        assert cid == get_correlation_id() == "job-1"
    assert get_correlation_id() is None


def test_outbound_session_sends_the_id_and_logs_the_call(log_lines):
    app = SlackSandbox()
    with SandboxServer(app) as server, correlation_scope("out-1"):
        response = http_session().post(server.url + app.webhook_path, json={"text": "hi"})

    assert response.status_code == 200
    assert app.requests[0].headers["X-Correlation-Id"] == "out-1"
    [call] = [line for line in log_lines() if line["event"] == "http.request"]
    assert call["correlation_id"] == "out-1"
    assert call["status"] == 200


def test_outbound_transport_failure_is_one_exception_type():
    with SandboxServer(SlackSandbox()) as server:
        url = server.url
    with pytest.raises(OutboundError):
        http_session().get(url + "/gone", timeout=2)


def test_redaction_of_secrets_in_any_shape():
    event = {
        "headers": {"Authorization": "Bearer abc.def", "X-Api-Key": "ssk_x_y", "Accept": "json"},
        "url": "https://partner.shopeemobile.com/api/v2/x?partner_id=1&sign=deadbeef&access_token=tok",
        "note": "called with Api-Key ssk_live_secret done",
        "nested": [{"refresh_token": "r"}, {"password": "p"}, {"client_secret": "c"}],
        "signature": "sig",
        "idempotency_key": "keep-me",
    }

    redacted = redact_value(event)

    assert redacted["headers"]["Authorization"] == REDACTED
    assert redacted["headers"]["X-Api-Key"] == REDACTED
    assert redacted["headers"]["Accept"] == "json"
    assert "deadbeef" not in redacted["url"]
    assert "tok" not in redacted["url"].split("access_token=")[1]
    assert "partner_id=1" in redacted["url"]
    assert "ssk_live_secret" not in redacted["note"]
    assert redacted["nested"] == [
        {"refresh_token": REDACTED},
        {"password": REDACTED},
        {"client_secret": REDACTED},
    ]
    assert redacted["signature"] == REDACTED
    assert redacted["idempotency_key"] == "keep-me"


def test_log_lines_are_json_with_level_logger_and_time(log_lines):
    structlog.get_logger("syncstore.test").warning("thing.happened", count=3)
    [line] = [entry for entry in log_lines() if entry["event"] == "thing.happened"]
    assert line["level"] == "warning"
    assert line["logger"] == "syncstore.test"
    assert line["count"] == 3
    assert line["timestamp"].endswith("Z")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_correlation_id_travels_request_to_task_to_outbound_call(
    celery_worker, slack, make_client, log_lines
):
    # given: a level just above its minimum
    warehouse = WarehouseFactory(vendor=default_vendor(), code="MAIN", is_default=True)
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(10), origin=TEST_ORIGIN)
    StockLevel.objects.filter(product=product).update(min_stock=Decimal(5))
    client = make_client()

    # when: a request takes it below; the low-stock alert is posted by a task on the worker
    response = client.post(
        "/api/v1/stock-mutations/",
        {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "-6"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="e2e",
        HTTP_X_CORRELATION_ID="corr-e2e-42",
    )
    assert response.status_code == 201, response.content
    wait_for(lambda: slack.messages)

    # then: the same id on the response, the ledger, the task, the outbound header and logs
    assert response["X-Correlation-ID"] == "corr-e2e-42"
    assert response.json()["movements"][0]["correlation_id"] == "corr-e2e-42"
    [outbound] = slack.requests
    assert outbound.headers["X-Correlation-Id"] == "corr-e2e-42"
    assert "Low stock" in slack.messages[0]["text"]
    wait_for(lambda: any(line["event"] == "alert.posted" for line in log_lines()))
    lines = log_lines()

    def ids(event: str) -> set:
        return {line.get("correlation_id") for line in lines if line["event"] == event}

    assert ids("request_finished") == {"corr-e2e-42"}
    assert ids("alert.raised") == {"corr-e2e-42"}
    assert ids("task.started") == {"corr-e2e-42"}
    assert ids("http.request") == {"corr-e2e-42"}
    assert ids("alert.posted") == {"corr-e2e-42"}
    started = next(line for line in lines if line["event"] == "task.started")
    assert started["task_name"] == "core.alert_post"
