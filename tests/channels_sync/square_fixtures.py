"""The Square sandbox on a local port, and Square channels wired to it (used by the Square
tests of `tests/channels_sync` and `tests/webhooks`)."""

from collections.abc import Callable, Iterator

import pytest

from channels_sync.adapters.square import SquareAdapter
from channels_sync.models import Channel, ChannelListing
from channels_sync.sandbox.square import SquareSandbox
from channels_sync.selectors import channel_webhook_url
from core.sandbox import SandboxServer

LOCATION = "LSANDBOXMAIN01"


def square_keys(n: int, *, location: str = LOCATION) -> dict[str, str]:
    """Made-up keys of the n-th listing: an item variation at a location."""
    return {"catalog_object_id": f"SQVAR{1000 + n:06d}", "location_id": location}


@pytest.fixture(scope="session")
def _square_server() -> Iterator[SandboxServer]:
    with SandboxServer(SquareSandbox(location_id=LOCATION)) as server:
        yield server


@pytest.fixture
def square(_square_server) -> SandboxServer:
    _square_server.app.reset()
    return _square_server


@pytest.fixture
def square_wire(vendor) -> Callable[..., Channel]:
    """A Square channel on the sandbox, feeding from `warehouses`, one listing per product
    (known to the sandbox at 0; clean unless `dirty=True`); `hooked=True` points the
    sandbox's notifications at the channel's webhook URL."""

    def make(
        server: SandboxServer,
        *,
        warehouses=(),
        products=(),
        dirty: bool = False,
        credentials: dict | None = None,
        hooked: bool = False,
        **fields,
    ) -> Channel:
        fields.setdefault("rate_limit_per_second", 1000)
        fields.setdefault("rate_limit_burst", 1000)
        channel = Channel.objects.create(
            vendor=vendor,
            name=f"square shop {Channel.objects.count() + 1}",
            type="square",
            base_url=server.url,
            auth_base_url=server.url,
            credentials=credentials or server.app.credentials(),
            **fields,
        )
        channel.warehouses.set(warehouses)
        keys = [square_keys(n) for n in range(len(products))]
        server.app.seed_listings(keys)
        ChannelListing.objects.bulk_create(
            ChannelListing(
                channel=channel, product=product, dirty=dirty, **SquareAdapter.keys_to_columns(k)
            )
            for product, k in zip(products, keys, strict=True)
        )
        if hooked:
            server.app.configure(webhook_url=channel_webhook_url(channel))
        return channel

    return make
