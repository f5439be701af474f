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
    assert listing.context["cl"].result_count == 1
    assert f'href="{ADMIN}/{event.pk}/change/' in listing.content.decode()
    # a filter that matches nothing lists nothing
    none = staff_client.get(f"{ADMIN}/?status=failed&channel__id__exact={event.channel_id}")
    assert none.status_code == 200
    assert none.context["cl"].result_count == 0
    assert f'href="{ADMIN}/{event.pk}/change/' not in none.content.decode()
    searched = staff_client.get(f"{ADMIN}/?q=k1")
    assert [row.pk for row in searched.context["cl"].result_list] == [event.pk]
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


def test_admin_event_with_a_deeply_nested_body_shows_it_capped(staff_client, event):
    from webhooks.selectors import PREVIEW_LIMIT

    # a body nested past the JSON reader's recursion limit, and long
    depth = 100_000
    WebhookEvent.objects.filter(pk=event.pk).update(body=b"[" * depth + b"]" * depth)
    detail = staff_client.get(f"{ADMIN}/{event.pk}/change/")
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "[" * 100 in page
    assert f"({2 * depth - PREVIEW_LIMIT} more characters)" in page
    assert "[" * (PREVIEW_LIMIT + 1) not in page
