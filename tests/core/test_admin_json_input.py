"""JSON typed in the admin is held to the API's limits: a form error, never a 500."""

import pytest
from django.contrib.auth.models import User

from inventory.models import Product
from tests.channels_sync.factories import ChannelFactory
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

DEEP = '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    client.raise_request_exception = False
    return client


def _form_data(response) -> dict:
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if field.disabled or value is None or value is False:
            continue
        data[name] = "on" if value is True else field.prepare_value(value)
    return data


@pytest.mark.parametrize(
    "attributes",
    ['{"colour": "bl\\u0000ack"}', '{"colour": "\\ud800"}', DEEP],
    ids=["nul", "surrogate", "deep"],
)
def test_admin_product_attributes_the_database_cannot_hold_are_a_form_error(
    staff, vendor, attributes
):
    product = ProductFactory(sku="P1", attributes={"colour": "red"})
    url = f"/admin/inventory/product/{product.pk}/change/"
    data = _form_data(staff.get(url))
    data["attributes"] = attributes

    response = staff.post(url, data)

    assert response.status_code == 200, response.status_code
    assert "attributes" in response.context["adminform"].form.errors
    assert Product.objects.get(pk=product.pk).attributes == {"colour": "red"}


def test_admin_channel_credentials_nested_too_deep_are_a_form_error(staff, vendor, warehouse):
    channel = ChannelFactory(vendor=vendor)
    url = f"/admin/channels_sync/channel/{channel.pk}/change/"
    data = {
        "name": channel.name,
        "base_url": channel.base_url,
        "auth_base_url": channel.auth_base_url or "",
        "warehouses": [warehouse.pk],
        "new_credentials": DEEP,
        "new_webhook_secret": "",
        "active": "on",
        "push_enabled": "on",
        "priority": "100",
        "allocationrule_set-TOTAL_FORMS": "0",
        "allocationrule_set-INITIAL_FORMS": "0",
    }

    response = staff.post(url, data)

    assert response.status_code == 200, response.status_code
    assert "new_credentials" in response.context["adminform"].form.errors
