"""order_apply_market on values a marketplace may send that cannot be stored as they are."""

from dataclasses import replace
from decimal import Decimal

import pytest

from channels_sync.adapters import OrderStatus
from orders.errors import UnstorableOrder
from orders.models import Order
from orders.services import order_apply_market
from tests.orders.conftest import market_line, market_order

S = OrderStatus
pytestmark = pytest.mark.django_db


def _apply(channel, detail) -> Order:
    return order_apply_market(channel=channel, order=detail, source="webhook")


def _refused(channel, detail) -> UnstorableOrder:
    with pytest.raises(UnstorableOrder) as refused:
        _apply(channel, detail)
    assert refused.value.code == "unstorable_order"
    assert refused.value.permanent is True
    assert Order.objects.count() == 0
    return refused.value


def test_order_apply_market_refuses_an_overlong_external_id(channel, listed):
    _, keys = listed(10)
    error = _refused(channel, market_order(S.PAID, [market_line(keys, 1)], external_id="9" * 101))
    assert error.details["field"] == "external_id"


def test_order_apply_market_takes_an_external_id_of_the_column_length(channel, listed):
    _, keys = listed(10)
    order = _apply(channel, market_order(S.PAID, [market_line(keys, 1)], external_id="9" * 100))
    assert order.external_id == "9" * 100


@pytest.mark.parametrize("quantity", ["1e12", "100000000000", "NaN", "Infinity"])
def test_order_apply_market_refuses_an_out_of_range_quantity(channel, listed, quantity):
    _, keys = listed(10)
    error = _refused(channel, market_order(S.PAID, [market_line(keys, quantity)]))
    assert error.details["field"] == "lines.0.quantity"


def test_order_apply_market_refuses_rows_of_one_line_summing_out_of_range(channel, listed):
    _, keys = listed(10)
    rows = [market_line(keys, "60000000000", key="k"), market_line(keys, "60000000000", key="k")]
    error = _refused(channel, market_order(S.PAID, rows))
    assert error.details["field"] == "lines.1.quantity"


def test_order_apply_market_refuses_an_out_of_range_amount(channel, listed):
    _, keys = listed(10)
    detail = replace(market_order(S.PAID, [market_line(keys, 1)]), amount=Decimal("1e15"))
    assert _refused(channel, detail).details["field"] == "amount"


def test_order_apply_market_refuses_an_out_of_range_line_price(channel, listed):
    _, keys = listed(10)
    line = replace(market_line(keys, 1), unit_price=Decimal("1e15"))
    error = _refused(channel, market_order(S.PAID, [line]))
    assert error.details["field"] == "lines.0.unit_price"


def test_order_apply_market_strips_nul_and_lone_surrogates(channel, listed):
    # given text and JSON carrying NUL and half an emoji
    product, keys = listed(10)
    line = replace(
        market_line(keys, 2, sku="SKU\x00-1"), name="Kaos\x00 polos \ud83d", line_key="L\x001"
    )
    detail = replace(
        market_order(S.PAID, [line], raw_status="PAID\x00"),
        external_id="ORD\x00-1",
        customer={"name": "Ani\x00", "notes\x00": ["a\x00b", {"x": "\udc00y"}]},
        address={"street": "Jl. Sudirman\x00 1", "zip": 10220},
    )
    # when
    order = _apply(channel, detail)
    # then everything is stored without them, and the line still maps and reserves
    order.refresh_from_db()
    assert order.external_id == "ORD-1"
    assert order.raw_status == "PAID"
    assert order.customer == {"name": "Ani", "notes": ["ab", {"x": "y"}]}
    assert order.address == {"street": "Jl. Sudirman 1", "zip": 10220}
    line = order.lines.get()
    assert (line.sku, line.name, line.line_key) == ("SKU-1", "Kaos polos ", "L1")
    assert (line.product_id, line.status) == (product.pk, "reserved")
    # and the same detail again is the same order
    assert _apply(channel, detail).pk == order.pk
    assert Order.objects.count() == 1


def test_order_apply_market_truncates_overlong_sku_and_name(channel, listed):
    _, keys = listed(10)
    line = replace(market_line(keys, 1, sku="S" * 250), name="N" * 400)
    order = _apply(channel, market_order(S.PAID, [line]))
    stored = order.lines.get()
    assert (stored.sku, stored.name) == ("S" * 200, "N" * 300)


def test_order_apply_market_cleans_nul_in_line_keys(channel, listed):
    product, keys = listed(10)
    dirty = {name: f"{value}\x00" for name, value in keys.items()}
    order = _apply(channel, market_order(S.PAID, [market_line(dirty, 1, key="k")]))
    line = order.lines.get()
    assert line.keys == keys
    assert line.product_id == product.pk
