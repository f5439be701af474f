import pytest
import requests
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from core.counters import counter_incr
from core.errors import api_exception_handler
from core.sandbox import SandboxServer, SlackSandbox

pytestmark = pytest.mark.django_db


def assert_shape(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details", "correlation_id"}
    assert body["code"] == code
    assert body["correlation_id"] == response["X-Correlation-ID"]
    return body


def test_unexpected_exception_is_a_json_500_with_the_correlation_id(api, monkeypatch, log_lines):
    def explode(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("inventory.selectors.stock_summary", explode)

    response = api.get("/api/v1/stock-levels/ANY/", HTTP_X_CORRELATION_ID="boom-1")

    body = assert_shape(response, 500, "internal_error")
    assert "disk on fire" not in body["message"]  # internals stay in the log
    [logged] = [line for line in log_lines() if line["event"] == "api.unhandled_error"]
    assert logged["correlation_id"] == "boom-1"
    assert "disk on fire" in logged["exception"]


def test_wrong_method_is_405(api):
    assert_shape(api.delete("/api/v1/stock-levels/"), 405, "method_not_allowed")


def test_non_json_body_is_415(api):
    response = api.post(
        "/api/v1/reservations/", "sku=A", content_type="application/x-www-form-urlencoded"
    )
    assert_shape(response, 415, "unsupported_media_type")


def test_pages_outside_the_api_keep_html_errors(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_handler_renders_any_exception_in_the_shape(rf):
    response = api_exception_handler(ValueError("x"), {"request": rf.get("/")})
    assert response.status_code == 500
    assert response.data["code"] == "internal_error"


def test_sandbox_control_api_injects_faults_over_http():
    app = SlackSandbox()
    with SandboxServer(app) as server:
        queued = requests.post(
            server.url + "/_sandbox/faults", json={"status": 503, "count": 2}, timeout=5
        )
        url = server.url + app.webhook_path
        statuses = [requests.post(url, json={"text": "x"}, timeout=5).status_code for _ in range(3)]
        seen = requests.get(server.url + "/_sandbox/requests", timeout=5).json()
        requests.post(server.url + "/_sandbox/reset", timeout=5)
    assert queued.status_code == 201
    assert statuses == [503, 503, 200]
    assert len(seen) == 3
    assert app.requests == []
    assert app.messages == []


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [(b"{}", 400, "no_text"), (b"not json", 400, "invalid_payload")],
)
def test_slack_sandbox_answers_like_slack(body, status, text):
    app = SlackSandbox()
    with SandboxServer(app) as server:
        response = requests.post(server.url + app.webhook_path, data=body, timeout=5)
        wrong = requests.post(
            server.url + "/services/T0SANDBOX/B0SANDBOX/nope", json={"text": "x"}, timeout=5
        )
        unknown = requests.post(server.url + "/hooks/x", json={"text": "x"}, timeout=5)
    assert (response.status_code, response.text) == (status, text)
    assert (wrong.status_code, wrong.text) == (403, "invalid_token")
    assert (unknown.status_code, unknown.text) == (404, "no_service")


def test_counter_counts_atomically_on_redis():
    assert [counter_incr("t:redis", ttl=60) for _ in range(3)] == [1, 2, 3]


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_counter_counts_on_the_embedded_cache():
    assert not isinstance(caches["default"], RedisCache)
    caches["default"].clear()
    assert [counter_incr("t:local", ttl=60) for _ in range(3)] == [1, 2, 3]
