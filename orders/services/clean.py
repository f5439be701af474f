"""A marketplace order made storable before it is applied: the service edge's cleaning.

Marketplaces send what their sellers and buyers typed. PostgreSQL refuses a NUL character
in text and in JSON, and Python strings may carry lone surrogates (half an emoji from a
truncated field) that no UTF-8 encoder accepts: both are dropped. Text longer than its
column is cut where losing the end changes nothing we act on (a line's SKU and name, the
raw status); an order id that does not fit would become another order, and a quantity or
an amount past its column's range would be stored as some other number, so those refuse
the order (`unstorable_order`, permanent: fetching the same detail again gives the same).
"""

import re
from dataclasses import replace
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from channels_sync.adapters import MarketOrder, MarketOrderLine
from inventory.models import MONEY, QUANTITY
from orders.errors import UnstorableOrder
from orders.models import Order, OrderLine

_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def text_clean(value: str) -> str:
    """The text without NUL characters and lone surrogates."""
    return _UNSTORABLE_CHARS.sub("", value) if value else value


def json_clean(value: Any) -> Any:
    """A JSON value with every string (keys too) cleaned like `text_clean`."""
    if isinstance(value, str):
        return text_clean(value)
    if isinstance(value, dict):
        return {json_clean(key): json_clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_clean(item) for item in value]
    return value


def _fits(value: Decimal, *, max_digits: int, decimal_places: int) -> bool:
    """Whether a decimal is stored in a column of these digits as itself (rounded only)."""
    if not value.is_finite():
        return False
    try:
        value.quantize(Decimal(1).scaleb(-decimal_places), context=Context(prec=max_digits))
    except InvalidOperation:
        return False
    return True


def _number(
    value: Decimal | None, *, field: str, external_id: str, column: dict[str, int]
) -> Decimal | None:
    if value is None:
        return None
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not _fits(number, **column):
        raise UnstorableOrder(
            f"Order {external_id}: {field} {number} is out of range.",
            details={"external_id": external_id, "field": field, "value": str(number)},
        )
    return number


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


def market_order_clean(order: MarketOrder) -> MarketOrder:
    """The order as it can be stored: strings cleaned, long text cut, ranges checked.

    Refuses (`unstorable_order`) an external id longer than its column, and a quantity or
    an amount (the order's, a line's price or discount) out of its column's range,
    including the summed quantity of a line sent as several rows. Pure: reads nothing.
    """
    external_id = text_clean(order.external_id or "")
    id_length = _max_length(Order, "external_id")
    if len(external_id) > id_length:
        raise UnstorableOrder(
            f"The order id is longer than {id_length} characters.",
            details={"field": "external_id", "external_id": external_id[:id_length]},
        )
    lines = []
    totals: dict[str, Decimal] = {}
    for index, line in enumerate(order.lines):
        field = f"lines.{index}"
        quantity = _number(
            line.quantity, field=f"{field}.quantity", external_id=external_id, column=QUANTITY
        ) or Decimal("0")
        key = text_clean(line.line_key or "")[: _max_length(OrderLine, "line_key")]
        # Rows of one key make one line (see `_lines_merge`): their sum is what is stored.
        total = totals.get(key or f"#{index}", Decimal("0")) + quantity
        totals[key or f"#{index}"] = total
        _number(total, field=f"{field}.quantity", external_id=external_id, column=QUANTITY)
        lines.append(
            MarketOrderLine(
                line_key=key,
                sku=text_clean(line.sku or "")[: _max_length(OrderLine, "sku")],
                keys=json_clean(dict(line.keys or {})),
                quantity=quantity,
                unit_price=_number(
                    line.unit_price,
                    field=f"{field}.unit_price",
                    external_id=external_id,
                    column=MONEY,
                ),
                discount=_number(
                    line.discount, field=f"{field}.discount", external_id=external_id, column=MONEY
                ),
                name=text_clean(line.name or "")[: _max_length(OrderLine, "name")],
            )
        )
    return replace(
        order,
        external_id=external_id,
        raw_status=text_clean(order.raw_status or "")[: _max_length(Order, "raw_status")],
        order_number=text_clean(order.order_number or ""),
        lines=tuple(lines),
        customer=json_clean(dict(order.customer or {})),
        address=json_clean(dict(order.address or {})),
        amount=_number(order.amount, field="amount", external_id=external_id, column=MONEY),
        currency=text_clean(order.currency or "")[: _max_length(Order, "currency")],
        payment_method=text_clean(order.payment_method or "")[
            : _max_length(Order, "payment_method")
        ],
    )
