"""The marketplace sandboxes (Shopee, Lazada, TikTok Shop, Tokopedia & Shop, Amazon).

Importing this module registers them with `core.sandbox`, so `manage.py sandbox serve`,
the tests, the demo and the benchmarks find them.
"""

from channels_sync.sandbox.amazon import AmazonSandbox
from channels_sync.sandbox.base import MarketplaceSandbox
from channels_sync.sandbox.lazada import LazadaSandbox
from channels_sync.sandbox.shopee import ShopeeSandbox
from channels_sync.sandbox.tiktok import TikTokSandbox, TokopediaSandbox

__all__ = [
    "AmazonSandbox",
    "LazadaSandbox",
    "MarketplaceSandbox",
    "ShopeeSandbox",
    "TikTokSandbox",
    "TokopediaSandbox",
]
