"""Marketplace sandboxes on local ports, and channels wired to them."""

from collections.abc import Callable, Iterator

import pytest

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel, ChannelListing
from core.sandbox import SandboxServer


def _serve(sandbox_class_name: str) -> Iterator[SandboxServer]:
    import channels_sync.sandbox as sandboxes

    with SandboxServer(getattr(sandboxes, sandbox_class_name)()) as server:
        yield server


@pytest.fixture(scope="session")
def _shopee_server() -> Iterator[SandboxServer]:
    yield from _serve("ShopeeSandbox")


@pytest.fixture(scope="session")
def _lazada_server() -> Iterator[SandboxServer]:
    yield from _serve("LazadaSandbox")


@pytest.fixture(scope="session")
def _tiktok_server() -> Iterator[SandboxServer]:
    yield from _serve("TikTokSandbox")


@pytest.fixture(scope="session")
def _tokopedia_server() -> Iterator[SandboxServer]:
    yield from _serve("TokopediaSandbox")


@pytest.fixture(scope="session")
def _ebay_server() -> Iterator[SandboxServer]:
    yield from _serve("EbaySandbox")


@pytest.fixture(scope="session")
def _shopify_server() -> Iterator[SandboxServer]:
    yield from _serve("ShopifySandbox")


@pytest.fixture
def shopify(_shopify_server) -> SandboxServer:
    _shopify_server.app.reset()
    return _shopify_server


@pytest.fixture(scope="session")
def _amazon_server() -> Iterator[SandboxServer]:
    yield from _serve("AmazonSandbox")


@pytest.fixture
def shopee(_shopee_server) -> SandboxServer:
    _shopee_server.app.reset()
    return _shopee_server


@pytest.fixture
def lazada(_lazada_server) -> SandboxServer:
    _lazada_server.app.reset()
    return _lazada_server


@pytest.fixture
def tiktok(_tiktok_server) -> SandboxServer:
    _tiktok_server.app.reset()
    return _tiktok_server


@pytest.fixture
def tokopedia(_tokopedia_server) -> SandboxServer:
    _tokopedia_server.app.reset()
    return _tokopedia_server


@pytest.fixture
def ebay(_ebay_server) -> SandboxServer:
    from channels_sync.adapters.ebay import app_tokens_forget
    from channels_sync.adapters.ebay.keys import public_keys_forget

    _ebay_server.app.reset()
    app_tokens_forget()  # application tokens are kept per process; the sandbox forgot them
    public_keys_forget()  # so are the public keys (under the sandbox's fixed kid)
    return _ebay_server


@pytest.fixture
def amazon(_amazon_server) -> SandboxServer:
    _amazon_server.app.reset()
    return _amazon_server


def listing_keys(channel_type: str, n: int, *, per_item: int = 1) -> dict[str, str]:
    """Made-up marketplace keys for the n-th listing (`per_item` listings share an item)."""
    if channel_type == "amazon":
        return {"seller_sku": f"SKU-{n}"}
    item, variant = 1000 + n // per_item, 5000 + n
    if channel_type == "shopee":
        return {"item_id": str(item), "model_id": str(variant)}
    if channel_type == "ebay":
        return {"sku": f"SKU-{item}", "offer_id": str(variant)}
    if channel_type == "shopify":
        return {
            "inventory_item_id": str(43000000 + n),
            "location_id": str(61000000 + n // per_item),
        }
    if channel_type == "lazada":
        return {"item_id": str(item), "sku_id": str(variant), "seller_sku": f"SELLER-{n}"}
    return {"product_id": str(item), "sku_id": str(variant)}


@pytest.fixture
def wire(vendor) -> Callable[..., Channel]:
    """Make a channel on a sandbox server, feeding from `warehouses`, with listings.

    `products` become listings (known to the sandbox, at quantity 0 there); the listings
    start clean (not dirty) unless `dirty=True`.
    """

    def make(
        server: SandboxServer,
        channel_type: str,
        *,
        warehouses=(),
        products=(),
        per_item: int = 1,
        dirty: bool = False,
        name: str | None = None,
        **fields,
    ) -> Channel:
        app = server.app
        fields.setdefault("rate_limit_per_second", 1000)
        fields.setdefault("rate_limit_burst", 1000)
        channel = Channel.objects.create(
            vendor=vendor,
            name=name or f"{channel_type} shop {Channel.objects.count() + 1}",
            type=channel_type,
            base_url=server.url,
            auth_base_url=server.url,
            credentials=app.credentials(),
            **fields,
        )
        channel.warehouses.set(warehouses)
        cls = adapter_class(channel_type)
        keys = [listing_keys(channel_type, n, per_item=per_item) for n in range(len(products))]
        app.seed_listings(keys)
        ChannelListing.objects.bulk_create(
            ChannelListing(
                channel=channel, product=product, dirty=dirty, **cls.keys_to_columns(key)
            )
            for product, key in zip(products, keys, strict=True)
        )
        return channel

    return make


# The conflict tests' shop (a listing pushed to the Shopee sandbox); defined beside them.
from tests.channels_sync.conflict_fixtures import make_shop  # noqa: E402, F401
