"""The API's JSON parser: nesting depth and NUL characters, for every endpoint."""

import json

import pytest

from core.parsers import MAX_JSON_DEPTH
from inventory.models import Product
from tests.channels_sync.factories import ChannelFactory
from tests.core.test_errors import assert_shape

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/v1/products/"


def nested(levels: int) -> str:
    """A JSON value of `levels` nested arrays."""
    return "[" * levels + "]" * levels


def post_json(client, url: str, text: str):
    return client.post(url, text, content_type="application/json")


def test_parsers_deep_nesting_is_400_invalid_json_not_a_recursion_error(api, vendor):
    body = f'{{"sku": "DEEP", "name": "Deep", "attributes": {nested(100_000)}}}'

    response = post_json(api, PRODUCTS, body)

    assert_shape(response, 400, "invalid_json")
    assert not Product.objects.filter(sku="DEEP").exists()


def test_parsers_nesting_just_over_the_limit_is_refused_and_at_the_limit_accepted(api, vendor):
    # The body object is one level, `attributes` holds the rest.
    over = f'{{"sku": "OVER", "name": "Over", "attributes": {nested(MAX_JSON_DEPTH)}}}'
    at = f'{{"sku": "AT", "name": "At", "attributes": {{"a": {nested(MAX_JSON_DEPTH - 2)}}}}}'

    assert_shape(post_json(api, PRODUCTS, over), 400, "invalid_json")
    response = post_json(api, PRODUCTS, at)
    assert response.status_code == 201, response.content


def test_parsers_deep_nesting_inside_channel_credentials_is_400_invalid_json(
    make_client, warehouse
):
    admin = make_client(("admin",))
    body = (
        '{"name": "Deep", "type": "shopee", "warehouses": ["MAIN"], '
        f'"credentials": {{"partner_id": {nested(5_000)}}}}}'
    )

    assert_shape(post_json(admin, "/api/v1/channels/", body), 400, "invalid_json")


def test_parsers_nul_in_a_json_value_is_400_naming_the_field(api, vendor):
    body = {"sku": "NUL", "name": "Nul", "attributes": {"colour": ["red", "bl\u0000ue"]}}

    response = api.post(PRODUCTS, body, format="json")

    payload = assert_shape(response, 400, "validation_error")
    assert list(payload["details"]) == ["attributes.colour[1]"]
    assert not Product.objects.filter(sku="NUL").exists()


def test_parsers_nul_in_a_json_key_is_400_naming_the_field(api, vendor):
    body = {"sku": "NUL", "name": "Nul", "attributes": {"size": {"e\u0000u": "42"}}}

    payload = assert_shape(api.post(PRODUCTS, body, format="json"), 400, "validation_error")

    # The key is named with the NUL escaped (the answer cannot carry what was refused).
    assert list(payload["details"]) == ["attributes.size.e\\u0000u"]


def test_parsers_nul_in_listing_keys_is_400_naming_the_field(api, warehouse):
    channel = ChannelFactory(warehouses=[warehouse])
    body = {"rows": [{"sku": "A", "keys": {"item_id": "10\u000001"}}]}

    response = api.post(f"/api/v1/channels/{channel.pk}/listings/", body, format="json")

    payload = assert_shape(response, 400, "validation_error")
    assert list(payload["details"]) == ["rows[0].keys.item_id"]


def test_parsers_plain_documents_parse_as_before(api, vendor):
    body = {"sku": "PLAIN", "name": "Pl\u00e4in", "attributes": {"tags": ["a", {"b": [1, 2.5]}]}}

    response = post_json(api, PRODUCTS, json.dumps(body))

    assert response.status_code == 201, response.content
    assert Product.objects.get(sku="PLAIN").attributes == body["attributes"]
