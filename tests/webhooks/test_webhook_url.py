"""A channel's webhook URL, as the API shows it (the URL to register, the one Shopee signs)."""

import pytest

from channels_sync.selectors import channel_webhook_url
from tests.channels_sync.factories import ChannelFactory


@pytest.mark.django_db
def test_webhook_url_in_the_channel_api_is_built_from_public_base_url(api, settings):
    settings.PUBLIC_BASE_URL = "https://sync.example.com"
    channel = ChannelFactory(type="lazada", webhook_signature_failures=2)

    body = api.get(f"/api/v1/channels/{channel.pk}/").json()

    assert body["webhook_url"] == f"https://sync.example.com/webhooks/lazada/{channel.pk}/"
    assert body["webhook_url"] == channel_webhook_url(channel)
    assert body["webhook_signature_failures"] == 2
    assert body["webhook_last_received_at"] is None
