"""The webhook events console and the channel's webhook state in the channel console."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.channels_sync.factories import ChannelFactory
from webhooks.models import WebhookEvent

ADMIN = "/admin/webhooks/webhookevent"


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def event(db) -> WebhookEvent:
    channel = ChannelFactory()
    return WebhookEvent.objects.create(
        channel=channel,
        topic="other",
        event_key="k1",
        body=b'{"note": "<script>alert(1)</script>", "b": 1}',
        status=WebhookEvent.Status.IGNORED,
    )


def test_admin_event_list_filters_and_detail_shows_the_body_escaped(staff_client, event):
    listing = staff_client.get(
        f"{ADMIN}/?status=ignored&topic=other&channel__id__exact={event.channel_id}"
    )
    assert listing.status_code == 200
    assert b"k1" in listing.content or f"{event.pk}".encode() in listing.content
    detail = staff_client.get(f"{ADMIN}/{event.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert "\n  &quot;b&quot;: 1," in page  # pretty-printed, sorted
    assert staff_client.get(f"{ADMIN}/add/").status_code == 403


def test_admin_reprocess_action_queues_the_event_again(
    staff_client, event, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            f"{ADMIN}/", {"action": "reprocess_selected", "_selected_action": [event.pk]}
        )
    assert response.status_code == 302
    event.refresh_from_db()
    # processed again (eagerly here): an "other" topic is ignored once more, one attempt used
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.attempts == 1


def test_admin_channel_shows_webhook_url_and_signature_failures(staff_client, settings):
    settings.PUBLIC_BASE_URL = "https://sync.example.com"
    channel = ChannelFactory(webhook_signature_failures=3)
    page = staff_client.get(f"/admin/channels_sync/channel/{channel.pk}/change/").content.decode()
    assert f"https://sync.example.com/webhooks/{channel.type}/{channel.pk}/" in page
    assert "Webhook signature failures" in page
    assert ">3<" in page
