"""The channel and allocation-rule services own their rules and name the field at fault."""

from decimal import Decimal

import pytest

from channels_sync.models import AllocationRule, Channel
from channels_sync.services.channels import channel_create, channel_update, rule_check, rule_set
from core.errors import DomainError
from tests.channels_sync.factories import ChannelFactory, credentials_for
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory


def _create(vendor, **fields) -> Channel:
    return channel_create(
        **{
            "vendor": vendor,
            "name": "Shop",
            "type": "shopee",
            "base_url": "https://shopee.example/",
            "credentials": credentials_for("shopee"),
            "warehouses": ["MAIN"],
            "actor": "test",
            **fields,
        }
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"credentials": {"partner_id": "1"}}, "invalid_credentials", "credentials"),
        ({"batch_size": 51}, "invalid_batch_size", "batch_size"),
        ({"warehouses": ["NOPE"]}, "unknown_warehouse", "warehouses"),
    ],
)
def test_channel_create_refusals_name_their_field(warehouse, fields, code, field):
    with pytest.raises(DomainError) as refused:
        _create(warehouse.vendor, **fields)

    assert (refused.value.code, refused.value.details["field"]) == (code, field)
    assert not Channel.objects.exists()


@pytest.mark.django_db
def test_channel_create_refuses_another_vendors_warehouse_of_the_same_code(warehouse):
    # given: another vendor's warehouse named like one of ours
    foreign = WarehouseFactory(vendor=VendorFactory(), code=warehouse.code)

    with pytest.raises(DomainError) as refused:
        _create(warehouse.vendor, warehouses=[foreign])

    assert refused.value.code == "unknown_warehouse"
    assert refused.value.details == {"field": "warehouses", "codes": [warehouse.code]}


@pytest.mark.django_db
def test_channel_update_refusals_name_their_field(warehouse):
    channel = _create(warehouse.vendor)
    _create(warehouse.vendor, name="Other")

    for changes, code, field in [
        ({"batch_size": 0}, "invalid_batch_size", "batch_size"),
        ({"type": "lazada"}, "invalid_field", "type"),
        ({"name": "Other"}, "channel_exists", "name"),
    ]:
        with pytest.raises(DomainError) as refused:
            channel_update(channel=channel, actor="test", **changes)
        assert (refused.value.code, refused.value.details["field"]) == (code, field)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rule", "code", "field"),
    [
        ({"strategy": "all", "sku": "P-1"}, "invalid_rule", "sku"),
        ({"strategy": "all", "listing_id": 1}, "invalid_rule", "listing_id"),
        ({"strategy": "all", "scope": "product"}, "invalid_rule", "sku"),
        ({"strategy": "all", "scope": "listing"}, "invalid_rule", "listing_id"),
        ({"strategy": "all", "scope": "product", "sku": "NOPE"}, "unknown_sku", "sku"),
        ({"strategy": "percentage", "parameter": 101}, "invalid_rule", "parameter"),
        ({"strategy": "all", "buffer_percent": 101}, "invalid_rule", "buffer_percent"),
        ({"strategy": "all", "buffer_units": -1}, "invalid_rule", "buffer_units"),
        ({"strategy": "bogus"}, "invalid_rule", "strategy"),
    ],
)
def test_rule_check_refusals_name_their_field(warehouse, rule, code, field):
    channel = ChannelFactory(vendor=warehouse.vendor, warehouses=[warehouse])
    ProductFactory(vendor=warehouse.vendor, sku="P-1")

    with pytest.raises(DomainError) as refused:
        rule_set(channel=channel, actor="test", **rule)

    assert (refused.value.code, refused.value.details["field"]) == (code, field)
    assert not AllocationRule.objects.exists()


@pytest.mark.django_db
def test_rule_check_writes_nothing_and_resolves_the_target(warehouse):
    channel = ChannelFactory(vendor=warehouse.vendor, warehouses=[warehouse])
    product = ProductFactory(vendor=warehouse.vendor, sku="P-1")

    checked = rule_check(
        channel=channel, scope="product", sku="P-1", strategy="fixed", parameter="3"
    )

    assert checked.target == {"channel": channel, "scope": "product", "product": product}
    assert checked.values["parameter"] == Decimal(3)
    assert not AllocationRule.objects.exists()
