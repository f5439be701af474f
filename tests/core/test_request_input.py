"""NUL characters in path and query parameters are refused before any view runs."""

import pytest

from tests.core.test_errors import assert_shape

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/products/A%00B/",
        "/api/v1/stock-levels/A%00B/",
    ],
)
def test_request_input_nul_in_a_path_parameter_is_400_naming_it(api, path):
    payload = assert_shape(api.get(path), 400, "validation_error")

    assert payload["details"] == {"sku": ["NUL characters are not allowed."]}


def test_request_input_nul_in_a_path_parameter_of_a_write_is_400(api):
    response = api.patch("/api/v1/products/A%00B/", {"name": "x"}, format="json")

    assert_shape(response, 400, "validation_error")


@pytest.mark.parametrize("path", ["/api/v1/products/", "/api/v1/stock-levels/"])
def test_request_input_nul_in_a_query_parameter_is_400_naming_it(api, path):
    payload = assert_shape(api.get(f"{path}?sku=A%00B"), 400, "validation_error")

    assert payload["details"] == {"sku": ["NUL characters are not allowed."]}


def test_request_input_nul_outside_the_api_is_a_plain_400(admin_client):
    response = admin_client.get("/admin/inventory/product/?q=A%00B")

    assert response.status_code == 400
