"""Orders: a channel on the default vendor, and MarketOrder builders."""

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from channels_sync.adapters import MarketOrder, MarketOrderLine, OrderStatus
from channels_sync.models import Channel
from tests.channels_sync.conftest import (  # noqa: F401 - fixtures used by the orders tests
    _lazada_server,
    _shopee_server,
    _tiktok_server,
    lazada,
    listing_keys,
    shopee,
    tiktok,
    wire,
)
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.get_fixed_timezone(0))


@pytest.fixture
def channel(warehouse) -> Channel:
    return ChannelFactory(warehouses=[warehouse])


@pytest.fixture
def listed(channel, stocked) -> Callable[..., tuple]:
    """A stocked product with a listing on the channel; returns (product, listing keys)."""
    counter = iter(range(1000))

    def make(quantity: str | int = 10, **fields) -> tuple:
        product = stocked(quantity, **fields)
        keys = listing_keys(channel.type, next(counter) + 100)
        columns = {"external_item_id": keys["item_id"], "external_variant_id": keys["model_id"]}
        ChannelListingFactory(channel=channel, product=product, dirty=False, **columns)
        return product, keys

    return make


def market_line(
    keys: dict, quantity: int | str = 1, *, sku: str = "", key: str = ""
) -> MarketOrderLine:
    return MarketOrderLine(
        line_key=key or "-".join(keys.values()) or sku,
        sku=sku,
        keys=dict(keys),
        quantity=Decimal(str(quantity)),
        unit_price=Decimal("10.00"),
    )


def market_order(
    status: OrderStatus | None,
    lines: list[MarketOrderLine],
    *,
    external_id: str = "250301ABC",
    minutes: int = 0,
    raw_status: str = "",
    paid: bool = True,
) -> MarketOrder:
    return MarketOrder(
        external_id=external_id,
        raw_status=raw_status or (status.upper() if status else "IN_CANCEL"),
        status=status,
        lines=tuple(lines),
        placed_at=T0,
        paid_at=T0 if paid else None,
        updated_at=T0 + timedelta(minutes=minutes),
        amount=Decimal("10.00"),
        currency="IDR",
    )
