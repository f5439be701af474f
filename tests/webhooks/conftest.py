"""Channels wired to the marketplace sandboxes, with their webhooks delivered to a live server."""

from collections.abc import Callable, Iterator

import pytest

from channels_sync.models import Channel
from channels_sync.selectors import channel_webhook_url
from core.sandbox import SandboxServer
from tests.channels_sync import conftest as channels_conftest
from webhooks.services.intake import intake_cache_clear

# The marketplace sandboxes and `wire`, shared with the channels tests.
_shopee_server = channels_conftest._shopee_server
_lazada_server = channels_conftest._lazada_server
_tiktok_server = channels_conftest._tiktok_server
_tokopedia_server = channels_conftest._tokopedia_server
_ebay_server = channels_conftest._ebay_server
_shopify_server = channels_conftest._shopify_server
shopify = channels_conftest.shopify
_amazon_server = channels_conftest._amazon_server
shopee = channels_conftest.shopee
lazada = channels_conftest.lazada
tiktok = channels_conftest.tiktok
tokopedia = channels_conftest.tokopedia
ebay = channels_conftest.ebay
amazon = channels_conftest.amazon
wire = channels_conftest.wire


@pytest.fixture(autouse=True)
def _intake_cache() -> Iterator[None]:
    # The intake keeps channels in process memory; ids and secrets differ between tests.
    intake_cache_clear()
    yield
    intake_cache_clear()


@pytest.fixture
def sandboxes(shopee, lazada, tiktok, tokopedia) -> dict[str, SandboxServer]:
    return {"shopee": shopee, "lazada": lazada, "tiktok": tiktok, "tokopedia": tokopedia}


@pytest.fixture
def hooked(live_server, settings, wire) -> Callable[..., Channel]:
    """A channel on a sandbox whose notifications go to the channel's webhook URL, served
    by the live server (`PUBLIC_BASE_URL` points at it)."""
    settings.PUBLIC_BASE_URL = live_server.url

    def make(server: SandboxServer, channel_type: str, **fields) -> Channel:
        channel = wire(server, channel_type, **fields)
        server.app.configure(webhook_url=channel_webhook_url(channel))
        return channel

    return make
