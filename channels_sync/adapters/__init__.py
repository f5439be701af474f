"""One adapter per marketplace; `adapter_class` finds it by channel type."""

from channels_sync.adapters.base import (
    Adapter,
    AdapterError,
    CallResult,
    ChannelEvent,
    ItemResult,
    MarketOrder,
    MarketOrderLine,
    ObservedStock,
    OrderRef,
    OrderStatus,
    Outcome,
    StockReport,
    StockUpdate,
)


def adapter_classes() -> dict[str, type[Adapter]]:
    """Every adapter by channel type."""
    from channels_sync.adapters.amazon import AmazonAdapter
    from channels_sync.adapters.ebay import EbayAdapter
    from channels_sync.adapters.lazada import LazadaAdapter
    from channels_sync.adapters.rest import RestAdapter
    from channels_sync.adapters.shopee import ShopeeAdapter
    from channels_sync.adapters.shopify import ShopifyAdapter
    from channels_sync.adapters.square import SquareAdapter
    from channels_sync.adapters.tiktok import TikTokAdapter, TokopediaAdapter

    return {
        cls.type: cls
        for cls in (
            ShopeeAdapter,
            LazadaAdapter,
            TikTokAdapter,
            TokopediaAdapter,
            ShopifyAdapter,
            AmazonAdapter,
            EbayAdapter,
            SquareAdapter,
            RestAdapter,
        )
    }


def adapter_class(channel_type: str) -> type[Adapter]:
    """The adapter of a channel type (`KeyError` for an unknown type)."""
    return adapter_classes()[channel_type]


__all__ = [
    "Adapter",
    "AdapterError",
    "CallResult",
    "ChannelEvent",
    "ItemResult",
    "MarketOrder",
    "MarketOrderLine",
    "ObservedStock",
    "OrderRef",
    "OrderStatus",
    "Outcome",
    "StockReport",
    "StockUpdate",
    "adapter_class",
    "adapter_classes",
]
