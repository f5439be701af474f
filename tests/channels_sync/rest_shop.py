"""Options of custom REST shop channels that speak to the REST shop sandbox, and a channel
wired to it."""

import copy
from typing import Any

from channels_sync.models import Channel, ChannelListing
from channels_sync.sandbox.rest import RestShopSandbox
from core.sandbox import SandboxServer

READ = {
    "path": "/api/v1/inventory",
    "mode": "batch",
    "query": {"skus": "{{skus}}"},
    "sku": "items[].sku",
    "quantity": "items[].available",
}
ORDERS = {
    "list": {
        "path": "/api/v1/orders",
        "query": {
            "updated_since": "{{since}}",
            "updated_until": "{{until}}",
            "page": "{{page}}",
        },
        "id": "orders[].id",
        "status": "orders[].status",
        "updated_at": "orders[].updated_at",
    },
    "fetch": {
        "path": "/api/v1/orders/{{order_id}}",
        "id": "id",
        "status": "status",
        "number": "number",
        "placed_at": "created_at",
        "paid_at": "paid_at",
        "updated_at": "updated_at",
        "currency": "currency",
        "sku": "lines[].sku",
        "quantity": "lines[].quantity",
        "line_id": "lines[].id",
        "price": "lines[].price",
        "name": "lines[].title",
    },
    "status_map": {
        "pending": "pending_payment",
        "paid": "paid",
        "packed": "ready_to_ship",
        "shipped": "shipped",
        "delivered": "delivered",
        "completed": "completed",
        "cancelled": "cancelled",
    },
}
PER_ITEM = {
    "auth": "bearer",
    "stock": {
        "path": "/api/v1/inventory/{{sku}}",
        "method": "PUT",
        "mode": "per_item",
        "body": {"quantity": "{{quantity}}"},
        "ok": "ok",
        "error": "error",
    },
    "read": READ,
    "orders": ORDERS,
}
BATCH = {
    "auth": "bearer",
    "stock": {
        "path": "/api/v1/inventory/batch",
        "method": "POST",
        "mode": "batch",
        "body": {"request_id": "{{idempotency_key}}", "items": "{{items}}"},
        "item": {"sku": "{{sku}}", "qty": "{{quantity}}"},
        "ok": "results[].ok",
        "error": "results[].error",
        "sku": "results[].sku",
    },
    "read": READ,
    "orders": ORDERS,
}


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
