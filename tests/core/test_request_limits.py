"""Request size limits: oversized bodies and too many parameters answer in the error shape."""

import json

import pytest
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator

from tests.core.test_errors import assert_shape

pytestmark = pytest.mark.django_db


def test_request_limits_body_over_the_limit_is_413_payload_too_large(api):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"sku": "A", "name": "x" * limit})

    response = api.post("/api/v1/products/", body, content_type="application/json")

    payload = assert_shape(response, 413, "payload_too_large")
    assert payload["details"] == {"max_bytes": limit}


def test_request_limits_too_many_query_parameters_is_400_too_many_fields(api):
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    query = "&".join(f"p{i}=1" for i in range(limit + 1))

    response = api.get(f"/api/v1/products/?{query}")

    payload = assert_shape(response, 400, "too_many_fields")
    assert payload["details"] == {"max_fields": limit}


def test_request_limits_too_many_query_parameters_on_a_post_is_400(api):
    query = "&".join(f"p{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = api.post(f"/api/v1/products/?{query}", {"sku": "A"}, format="json")

    assert_shape(response, 400, "too_many_fields")


def test_request_limits_oversized_form_outside_the_api_is_413(client):
    body = "username=" + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = client.post("/admin/login/", body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 413


def test_request_limits_are_documented_on_every_api_operation():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if operation.get("security") != [{}]
    ]
    assert operations
    for path, method, operation in operations:
        responses = operation["responses"]
        assert "payload_too_large" in responses["413"]["description"], (path, method)
        assert "too_many_fields" in responses["400"]["description"], (path, method)
