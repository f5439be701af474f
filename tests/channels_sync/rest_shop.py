"""Custom REST shop channels wired to the REST shop sandbox, with the sandbox's channel
options (`channels_sync.sandbox.rest_options`)."""

import copy
from typing import Any

from channels_sync.models import Channel, ChannelListing
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.sandbox.rest_options import PER_ITEM
from core.sandbox import SandboxServer


def options(base: dict[str, Any] = PER_ITEM, **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` with top-level `changes`."""
    return {**copy.deepcopy(base), **changes}


def sku(n: int) -> str:
    return f"TEE-{n:03d}"


def rest_channel(
    vendor, server: SandboxServer, *, warehouses=(), products=(), dirty=False, **fields
) -> Channel:
    """A REST shop channel on the sandbox, its listings known to the shop at quantity 0."""
    app: RestShopSandbox = server.app
    fields.setdefault("rate_limit_per_second", 1000)
    fields.setdefault("rate_limit_burst", 1000)
    fields.setdefault("options", options())
    channel = Channel.objects.create(
        vendor=vendor,
        name=f"rest shop {Channel.objects.count() + 1}",
        type="rest",
        base_url=server.url,
        credentials=app.credentials(),
        **fields,
    )
    channel.warehouses.set(warehouses)
    app.seed_listings([{"sku": sku(n)} for n in range(len(products))])
    ChannelListing.objects.bulk_create(
        ChannelListing(channel=channel, product=product, dirty=dirty, external_item_id=sku(n))
        for n, product in enumerate(products)
    )
    return channel
