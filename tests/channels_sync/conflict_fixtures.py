"""A stock mismatch on a Shopee sandbox: the channel shows 7 where we pushed 10.

Import the fixtures into a test module (`from tests.channels_sync.conflict_fixtures import
...`); they build on the sandboxes of `tests/channels_sync/conftest.py`.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel, ChannelListing, Conflict, ConflictPolicy
from channels_sync.services.conflicts import conflict_open
from channels_sync.services.push import channel_push
from core.sandbox import SandboxServer
from inventory.models import Product, StockLevel, Warehouse
from inventory.services import Origin, stock_set
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")


@dataclass
class Shop:
    """A pushed listing on a sandbox shop, and what is needed to disagree with it."""

    server: SandboxServer
    channel: Channel
    listing: ChannelListing
    product: Product
    warehouse: Warehouse

    @property
    def keys(self) -> dict:
        return adapter_class(self.channel.type).keys_from_listing(self.listing)

    def shows(self) -> int | None:
        """The quantity the marketplace shows for the listing."""
        return self.server.app.quantity(self.keys)

    def edit_behind_our_back(self, quantity: int) -> None:
        """A seller changes the stock in the marketplace's own console."""
        app = self.server.app
        with app._lock:
            app.stock[app.key_of(self.keys)] = quantity

    def on_hand(self, warehouse: Warehouse | None = None) -> Decimal:
        level = StockLevel.objects.filter(
            product=self.product, warehouse=warehouse or self.warehouse
        ).first()
        return level.on_hand if level else Decimal(0)

    def mismatch(self, theirs: int = 7, **fields) -> Conflict:
        """What the reconciliation does on reading `theirs` back: open a stock mismatch."""
        self.edit_behind_our_back(theirs)
        self.listing.refresh_from_db()
        now = timezone.now()
        fields.setdefault("ours_at", self.listing.last_pushed_at)
        fields.setdefault("theirs_at", now)
        conflict, _ = conflict_open(
            kind=Conflict.Kind.STOCK_MISMATCH,
            vendor=self.channel.vendor,
            channel=self.channel,
            listing=self.listing,
            product=self.product,
            source=Conflict.Source.RECONCILIATION,
            ours=self.listing.last_pushed_quantity,
            theirs=theirs,
            **fields,
        )
        return conflict


@pytest.fixture
def make_shop(shopee, wire, warehouse):
    """A Shopee channel (policy `manual` unless given) whose listing was pushed `quantity`."""

    def make(
        quantity: int = 10,
        *,
        policy: str = ConflictPolicy.MANUAL,
        product: Product | None = None,
        warehouses=None,
        **fields,
    ) -> Shop:
        if product is None:
            product = ProductFactory()
            stock_set(
                product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN
            )
        channel = wire(
            shopee,
            "shopee",
            warehouses=warehouses or [warehouse],
            products=[product],
            dirty=True,
            conflict_policy=policy,
            **fields,
        )
        report = channel_push(channel_id=channel.pk)
        assert report.pushed == 1, report
        listing = channel.listings.get()
        assert listing.last_pushed_quantity == quantity
        return Shop(shopee, channel, listing, product, warehouse)

    return make


# A channel whose orders were polled after any observation a test makes (the automatic
# resolution of a conflict where the channel shows less is held back until then).
POLLED = timezone.now() + timedelta(days=1)
