"""The marketplace sandboxes (Shopee, Lazada, TikTok Shop, Tokopedia & Shop, Shopify).

Importing this module registers them with `core.sandbox`, so `manage.py sandbox serve`,
the tests, the demo and the benchmarks find them.
"""

from channels_sync.sandbox.base import MarketplaceSandbox
from channels_sync.sandbox.lazada import LazadaSandbox
from channels_sync.sandbox.shopee import ShopeeSandbox
from channels_sync.sandbox.shopify import ShopifySandbox
from channels_sync.sandbox.tiktok import TikTokSandbox, TokopediaSandbox

__all__ = [
    "LazadaSandbox",
    "MarketplaceSandbox",
    "ShopeeSandbox",
    "ShopifySandbox",
    "TikTokSandbox",
    "TokopediaSandbox",
]
