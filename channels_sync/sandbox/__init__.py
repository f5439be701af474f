"""The marketplace sandboxes (Shopee, Lazada, TikTok Shop, Tokopedia & Shop, and a
merchant's own shop for the custom REST channel type).

Importing this module registers them with `core.sandbox`, so `manage.py sandbox serve`,
the tests, the demo and the benchmarks find them.
"""

from channels_sync.sandbox.base import MarketplaceSandbox
from channels_sync.sandbox.lazada import LazadaSandbox
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.sandbox.shopee import ShopeeSandbox
from channels_sync.sandbox.tiktok import TikTokSandbox, TokopediaSandbox

__all__ = [
    "LazadaSandbox",
    "MarketplaceSandbox",
    "RestShopSandbox",
    "ShopeeSandbox",
    "TikTokSandbox",
    "TokopediaSandbox",
]
