"""The marketplace sandboxes: one per channel type (Shopee, Lazada, TikTok Shop, Tokopedia &
Shop, Shopify, Amazon, eBay, Square, custom REST shop).

Importing this module registers them with `core.sandbox`, so `manage.py sandbox serve`,
the tests, the demo and the benchmarks find them.
"""

from channels_sync.sandbox.amazon import AmazonSandbox
from channels_sync.sandbox.base import MarketplaceSandbox
from channels_sync.sandbox.ebay import EbaySandbox
from channels_sync.sandbox.lazada import LazadaSandbox
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.sandbox.shopee import ShopeeSandbox
from channels_sync.sandbox.shopify import ShopifySandbox
from channels_sync.sandbox.square import SquareSandbox
from channels_sync.sandbox.tiktok import TikTokSandbox, TokopediaSandbox

__all__ = [
    "AmazonSandbox",
    "EbaySandbox",
    "LazadaSandbox",
    "MarketplaceSandbox",
    "RestShopSandbox",
    "ShopeeSandbox",
    "ShopifySandbox",
    "SquareSandbox",
    "TikTokSandbox",
    "TokopediaSandbox",
]
