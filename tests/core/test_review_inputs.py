"""Inputs an attacker or a buggy client sends that once ended in a 500."""

import base64
from urllib.parse import urlencode

import pytest
from django.test import override_settings

from tests.inventory.factories import default_vendor

pytestmark = pytest.mark.django_db


def test_reservation_ttl_past_any_duration_is_invalid_ttl(api, stocked):
    product = stocked(5)
    for ttl in (10**15, -(10**15), 2**31):
        body = {"sku": product.sku, "quantity": "1", "ttl_seconds": ttl}
        response = api.post("/api/v1/reservations/", body, format="json")
        assert response.status_code == 400, (ttl, response.content)
    huge = api.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": "1", "ttl_seconds": 10**9},
        format="json",
    )
    assert huge.status_code == 400
    assert huge.json()["code"] == "invalid_ttl"


@pytest.mark.parametrize(
    "body",
    [
        '{"sku": "S-2", "name": "ok", "attributes": {"k": "\\ud800"}}',
        '{"sku": "S-3", "name": "ok", "attributes": {"\\udfff": "v"}}',
        '{"sku": "S-4", "name": "ok", "attributes": {"k": ["x", "a\\udc00b"]}}',
    ],
)
def test_lone_surrogates_in_json_columns_are_refused(api, body):
    response = api.generic("POST", "/api/v1/products/", body, content_type="application/json")

    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["code"] == "validation_error"
    assert "surrogate" in str(payload["details"])


def test_paired_surrogates_are_a_character_and_pass(api):
    body = '{"sku": "S-5", "name": "ok", "attributes": {"k": "\\ud83d\\ude00"}}'
    response = api.generic("POST", "/api/v1/products/", body, content_type="application/json")

    assert response.status_code == 201, response.content
    assert response.json()["attributes"] == {"k": "\U0001f600"}


@pytest.mark.parametrize("position", ["abc", "1e5", "1.5"])
def test_forged_cursor_position_is_invalid_filter(api, stocked, position):
    stocked(5)
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()

    response = api.get("/api/v1/stock-movements/", {"cursor": cursor})

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_filter"


def test_agent_registration_replay_after_its_key_retired_is_409(make_client, settings):
    # given: a registration answered under the first key of the ring
    client = make_client(scopes=["admin"])
    body = {
        "vendor_id": str(default_vendor().pk),
        "agent_url": "http://127.0.0.1:1/agent",
        "erp_type": "generic",
    }
    first = client.post("/api/v1/erp/agents/", body, format="json", HTTP_IDEMPOTENCY_KEY="reg-1")
    assert first.status_code in (200, 201), first.content

    # when: that key leaves FIELD_ENCRYPTION_KEYS and the request is repeated
    with override_settings(FIELD_ENCRYPTION_KEYS=settings.FIELD_ENCRYPTION_KEYS[1:]):
        again = client.post(
            "/api/v1/erp/agents/", body, format="json", HTTP_IDEMPOTENCY_KEY="reg-1"
        )

    # then: a clear refusal, not a 500
    assert again.status_code == 409, again.content
    assert again.json()["code"] == "idempotency_key_unreplayable"
