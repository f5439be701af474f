"""The webhook intake: signature checks, one stored event per event key, the answers."""

import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
import requests
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from channels_sync.models import Channel
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.selectors import channel_webhook_url
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db(transaction=True)


def signature_failures(channel_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "syncstore_webhook_signature_failures_total", {"channel_type": channel_type}
    )
    return value or 0.0


def webhooks_counted(channel_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "syncstore_webhooks_total", {"channel_type": channel_type, "outcome": outcome}
    )
    return value or 0.0


def lazada_signed(channel: Channel, body: bytes) -> dict[str, str]:
    """Lazada's push signature, computed here from the documented recipe (app_key + body)."""
    credentials = channel.credentials
    digest = hmac.new(
        credentials["app_secret"].encode(), credentials["app_key"].encode() + body, hashlib.sha256
    ).hexdigest()
    return {"Authorization": digest, "Content-Type": "application/json"}


def lazada_message(order_id: str = "500000000000001", status: str = "pending") -> bytes:
    return json.dumps(
        {
            "seller_id": "1000",
            "message_type": 0,
            "data": {
                "order_status": status,
                "trade_order_id": order_id,
                "trade_order_line_id": order_id + "1",
                "status_update_time": 1_790_000_000,
            },
            "timestamp": 1_790_000_000_000,
            "site": "lazada_id",
        }
    ).encode()


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=10)


def test_intake_bad_signature_answers_401_stores_nothing_and_counts(lazada, hooked):
    channel = hooked(lazada, "lazada")
    before = signature_failures("lazada")
    body = lazada_message()
    headers = lazada_signed(channel, body) | {"Authorization": "0" * 64}

    response = post(channel_webhook_url(channel), body, headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert WebhookEvent.objects.count() == 0
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 1
    assert channel.webhook_signature_failed_at is not None
    assert signature_failures("lazada") == before + 1


def test_intake_sandbox_bad_signature_is_refused(tiktok, hooked):
    channel = hooked(tiktok, "tiktok")
    order = tiktok.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "A", "quantity": 1}],
        status="AWAITING_SHIPMENT",
        faults=NotifyFaults(bad_signature=True),
    )
    assert [d.http_status for d in tiktok.app.deliveries] == [401]
    assert order.order_id
    assert WebhookEvent.objects.count() == 0
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 1


@pytest.mark.parametrize("error", [RuntimeError, ArithmeticError, AssertionError])
def test_intake_a_signature_check_that_raises_is_a_401_never_a_500(
    lazada, hooked, monkeypatch, error
):
    from channels_sync.adapters.lazada import LazadaAdapter

    def broken(self, **kwargs):
        raise error("the check broke")

    monkeypatch.setattr(LazadaAdapter, "webhook_verify", broken)
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    response = post(channel_webhook_url(channel), body, lazada_signed(channel, body))
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    assert response.json()["correlation_id"]
    assert WebhookEvent.objects.count() == 0


def test_intake_missing_signature_answers_401(lazada, hooked):
    channel = hooked(lazada, "lazada")
    response = post(channel_webhook_url(channel), lazada_message(), {})
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert WebhookEvent.objects.count() == 0


def test_intake_unknown_channel_or_wrong_type_answers_404(lazada, hooked, live_server):
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    headers = lazada_signed(channel, body)

    unknown = post(f"{live_server.url}/webhooks/lazada/{channel.pk + 1000}/", body, headers)
    wrong_type = post(f"{live_server.url}/webhooks/shopee/{channel.pk}/", body, headers)

    assert unknown.status_code == 404
    assert unknown.json()["code"] == "channel_not_found"
    assert wrong_type.status_code == 404
    assert wrong_type.json()["code"] == "channel_not_found"
    assert WebhookEvent.objects.count() == 0


def test_intake_other_methods_answer_405(lazada, hooked):
    channel = hooked(lazada, "lazada")
    response = requests.get(channel_webhook_url(channel), timeout=10)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_intake_body_over_the_limit_answers_413(lazada, hooked, settings):
    channel = hooked(lazada, "lazada")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = b'{"pad": "' + b"x" * 2000 + b'"}'
    response = post(channel_webhook_url(channel), body, lazada_signed(channel, body))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert WebhookEvent.objects.count() == 0


@pytest.mark.parametrize("channel_type", ["shopee", "lazada", "tiktok", "tokopedia"])
def test_intake_each_marketplace_notification_is_stored_once(
    channel_type, sandboxes, hooked, settings
):
    # given a channel whose sandbox signs its notifications (its own code, not the adapter's)
    server = sandboxes[channel_type]
    channel = hooked(server, channel_type)
    received = webhooks_counted(channel_type, "received")
    duplicates = webhooks_counted(channel_type, "duplicate")
    # when the marketplace notifies one change three times
    server.app.order_create(
        lines=[{"keys": listing_keys(channel_type, 0), "sku": "SKU-0", "quantity": 1}],
        status=server.app.unpaid_statuses[0],
        faults=NotifyFaults(copies=3),
    )
    # then every copy is acknowledged with the marketplace's answer, and one event is kept
    assert [d.http_status for d in server.app.deliveries] == [200, 200, 200]
    event = WebhookEvent.objects.get()
    assert event.channel_id == channel.pk
    assert event.topic == "order"
    assert event.order_id
    assert bytes(event.body).startswith(b"{")
    assert "Authorization" not in event.headers
    assert event.headers["Content-Type"].startswith("application/json")
    assert webhooks_counted(channel_type, "received") == received + 1
    assert webhooks_counted(channel_type, "duplicate") == duplicates + 2


def test_intake_duplicate_answers_the_ack_body_1000_times_and_stores_one(lazada, hooked):
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    headers = {"HTTP_AUTHORIZATION": lazada_signed(channel, body)["Authorization"]}
    client = Client()
    path = f"/webhooks/lazada/{channel.pk}/"
    statuses = set()
    for _ in range(1000):
        response = client.post(path, body, content_type="application/json", **headers)
        statuses.add((response.status_code, response.content))
    assert statuses == {(200, b"")}
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_intake_20_concurrent_copies_store_one_event(lazada, hooked):
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    headers = lazada_signed(channel, body)
    url = channel_webhook_url(channel)
    barrier = threading.Barrier(20)
    answers: list[int] = []

    def send() -> None:
        barrier.wait()
        answers.append(post(url, body, headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 20
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_intake_unreadable_body_is_stored_ignored(lazada, hooked):
    channel = hooked(lazada, "lazada")
    body = b"\x00not json\xff"
    response = post(channel_webhook_url(channel), body, lazada_signed(channel, body))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.topic == "unreadable"
    assert event.status == WebhookEvent.Status.IGNORED
    assert bytes(event.body) == body


def test_intake_inactive_channel_still_stores(lazada, hooked):
    channel = hooked(lazada, "lazada", active=False)
    body = lazada_message()
    response = post(channel_webhook_url(channel), body, lazada_signed(channel, body))
    assert response.status_code == 200
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_intake_rotated_secret_is_honoured_at_once_and_old_one_refused_soon(
    lazada, hooked, settings
):
    channel = hooked(lazada, "lazada")
    url = channel_webhook_url(channel)
    first = lazada_message("500000000000001")
    assert post(url, first, lazada_signed(channel, first)).status_code == 200  # kept in memory
    old = dict(channel.credentials)
    channel.credentials = {**old, "app_secret": "rotated-secret"}
    channel.save()

    second = lazada_message("500000000000002")
    # the new secret is accepted at once (a failed check reads the channel again)
    assert post(url, second, lazada_signed(channel, second)).status_code == 200
    # and the old one is refused (the kept copy was replaced by that read)
    third = lazada_message("500000000000003")
    stale = Channel(credentials=old)
    assert post(url, third, lazada_signed(stale, third)).status_code == 401


def test_intake_deleted_channel_answers_404_once_the_kept_copy_lapses(lazada, hooked, settings):
    settings.WEBHOOK_CHANNEL_CACHE_SECONDS = 0
    channel = hooked(lazada, "lazada")
    url = channel_webhook_url(channel)
    body = lazada_message()
    headers = lazada_signed(channel, body)
    assert post(url, body, headers).status_code == 200
    channel.delete()
    assert post(url, body, headers).status_code == 404


def test_intake_last_received_is_written_at_most_once_a_minute(lazada, hooked):
    channel = hooked(lazada, "lazada")
    url = channel_webhook_url(channel)
    first = lazada_message("500000000000001")
    post(url, first, lazada_signed(channel, first))
    channel.refresh_from_db()
    stamp = channel.webhook_last_received_at
    assert stamp is not None
    assert timezone.now() - stamp < timedelta(seconds=30)
    second = lazada_message("500000000000002")
    post(url, second, lazada_signed(channel, second))
    channel.refresh_from_db()
    assert channel.webhook_last_received_at == stamp


def shopee_signed(partner_key: str, url: str, body: bytes) -> dict[str, str]:
    """Shopee's push signature, from the documented recipe: HMAC of url + "|" + body."""
    digest = hmac.new(partner_key.encode(), url.encode() + b"|" + body, hashlib.sha256)
    return {"Authorization": digest.hexdigest(), "Content-Type": "application/json"}


def test_intake_shopee_signs_the_registered_url_and_answers_an_empty_body(
    shopee, hooked, live_server
):
    channel = hooked(shopee, "shopee")
    url = channel_webhook_url(channel)
    assert url == f"{live_server.url}/webhooks/shopee/{channel.pk}/"
    body = json.dumps(
        {"shop_id": 1, "code": 3, "timestamp": 1_790_000_000,
         "data": {"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP", "update_time": 1}}
    ).encode()  # fmt: skip
    partner_key = channel.credentials["partner_key"]

    # a signature over another URL (the one a proxy shows, say) is refused
    elsewhere = shopee_signed(partner_key, url.replace("/webhooks/", "/hooks/"), body)
    refused = post(url, body, elsewhere)
    accepted = post(url, body, shopee_signed(partner_key, url, body))
    again = post(url, body, shopee_signed(partner_key, url, body))

    assert refused.status_code == 401
    assert (accepted.status_code, accepted.content) == (200, b"")
    assert (again.status_code, again.content) == (200, b"")
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def app_signed(channel: Channel, body: bytes) -> str:
    """Lazada's and TikTok's push signature: HMAC(app_secret, app_key + raw body)."""
    credentials = channel.credentials
    return hmac.new(
        credentials["app_secret"].encode(), credentials["app_key"].encode() + body, hashlib.sha256
    ).hexdigest()


def tiktok_message(**envelope) -> bytes:
    data = {"order_id": "576486316948490001", "order_status": "UNPAID", "update_time": 1}
    return json.dumps({"type": 1, "data": data, **envelope}).encode()


HOSTILE = [
    ("lazada", lazada_message(order_id="\u0000"), "unreadable", ""),
    ("lazada", lazada_message(order_id="\ud800"), "unreadable", ""),
    ("lazada", lazada_message(status="pend\u0000ing"), "unreadable", ""),
    ("lazada", lazada_message(status="\ud800"), "unreadable", ""),
    ("tiktok", tiktok_message(tts_notification_id="\ud800"), "order", "576486316948490001"),
    ("tiktok", tiktok_message(tts_notification_id="7327\u00001"), "order", "576486316948490001"),
    (
        "tiktok",
        tiktok_message(data={"order_id": "\ud800", "order_status": "UNPAID"}),
        "unreadable",
        "",
    ),
    (
        "tiktok",
        tiktok_message(
            tts_notification_id="7327112393057371910",
            data={"order_id": "\u0000", "order_status": "UNPAID"},
        ),
        "unreadable",
        "",
    ),
    (
        "tiktok",
        tiktok_message(data={"order_id": "576486316948490001", "order_status": "\ud800"}),
        "order",
        "576486316948490001",
    ),
    ("shopee", json.dumps({"code": "\u00b2", "data": {}}).encode(), "unreadable", ""),
    ("shopee", b"[" * 100_000, "unreadable", ""),
]


@pytest.mark.parametrize(("channel_type", "body", "topic", "order_id"), HOSTILE)
def test_intake_signed_hostile_body_is_stored_with_sane_values(
    channel_type, body, topic, order_id, sandboxes, wire
):
    # given: a notification signed with the channel's own key, carrying NUL, a lone
    # surrogate or a body that breaks naive parsing
    channel = wire(sandboxes[channel_type], channel_type)
    if channel_type == "shopee":
        signature = shopee_signed(
            channel.credentials["partner_key"], channel_webhook_url(channel), body
        )["Authorization"]
    else:
        signature = app_signed(channel, body)

    # when
    response = Client().post(
        f"/webhooks/{channel_type}/{channel.pk}/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=signature,
    )

    # then: acknowledged and kept, with values PostgreSQL took
    assert response.status_code == 200
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.order_id) == (topic, order_id)
    assert bytes(event.body) == body
    if topic == "unreadable":
        assert event.status == WebhookEvent.Status.IGNORED
        assert event.event_key.removeprefix("body:") == hashlib.sha256(body).hexdigest()


# What a parser with a gap could hand the intake: text PostgreSQL refuses, or too long.
UNSTORABLE = {"nul": "a\u0000b", "surrogate": "a\ud800b", "long": "7" * 201}


@pytest.mark.parametrize("bad", sorted(UNSTORABLE))
@pytest.mark.parametrize("field", ["topic", "event_key", "order_id", "status"])
@pytest.mark.parametrize("channel_type", ["lazada", "tiktok"])
def test_intake_unstorable_parsed_field_is_kept_unreadable_never_a_500(
    channel_type, field, bad, sandboxes, wire, monkeypatch
):
    # given a channel whose adapter reads an unstorable value from a validly signed body
    # (the adapters guard this themselves; the intake must not depend on it)
    from channels_sync.adapters import ChannelEvent, adapter_class

    channel = wire(sandboxes[channel_type], channel_type)
    values = {"topic": "order", "event_key": "k-1", "order_id": "5001", "status": "paid"}
    values[field] = UNSTORABLE[bad]
    parsed = ChannelEvent(**values)
    monkeypatch.setattr(
        adapter_class(channel_type), "webhook_parse", lambda self, body, headers=None: parsed
    )
    body = lazada_message() if channel_type == "lazada" else tiktok_message()
    # when
    response = Client().post(
        f"/webhooks/{channel_type}/{channel.pk}/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=app_signed(channel, body),
    )
    # then acknowledged, and kept by its body's digest as unreadable (an event key that is
    # merely long is hashed, not refused)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(channel=channel)
    if (field, bad) == ("event_key", "long"):
        assert (event.topic, event.order_id) == ("order", "5001")
        assert event.event_key.startswith("sha256:")
        return
    assert (event.topic, event.status, event.order_id) == ("unreadable", "ignored", "")
    assert event.event_key == "body:" + hashlib.sha256(body).hexdigest()
    assert bytes(event.body) == body


def test_intake_order_id_too_long_is_unreadable_never_truncated(lazada, hooked):
    channel = hooked(lazada, "lazada")
    body = lazada_message(order_id="5" * 101)
    response = post(channel_webhook_url(channel), body, lazada_signed(channel, body))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.topic, event.order_id, event.status) == ("unreadable", "", "ignored")


def test_intake_a_header_postgres_cannot_keep_makes_the_event_unreadable(lazada, hooked):
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    response = Client().post(
        f"/webhooks/lazada/{channel.pk}/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=lazada_signed(channel, body)["Authorization"],
        HTTP_USER_AGENT="agent\x00",
    )
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.topic == "unreadable"
    assert "User-Agent" not in event.headers


def test_intake_flood_of_bad_signatures_reads_and_writes_the_channel_rarely(
    lazada, hooked, make_client, settings
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS = 60
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    client = Client()
    path = f"/webhooks/lazada/{channel.pk}/"
    before = signature_failures("lazada")
    # when 30 badly signed webhooks arrive
    with CaptureQueriesContext(connection) as queries:
        answers = {
            client.post(
                path, body, content_type="application/json", HTTP_AUTHORIZATION="0" * 64
            ).status_code
            for _ in range(30)
        }
    assert answers == {401}
    # then the channel was read once at first, read again once, written once (not 30 times)
    touching = [q["sql"] for q in queries.captured_queries if "channels_sync_channel" in q["sql"]]
    assert len([sql for sql in touching if sql.startswith("UPDATE")]) == 1
    assert len([sql for sql in touching if sql.startswith("SELECT")]) == 2
    # /metrics counted every one at once
    assert signature_failures("lazada") == before + 30
    # the row holds the first; the API and the console show all 30 (pending ones flushed)
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 1
    api = make_client(("read",))
    data = api.get(f"/api/v1/channels/{channel.pk}/").json()
    assert data["webhook_signature_failures"] == 30
    assert data["webhook_signature_failed_at"] is not None
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 30
    listed = api.get("/api/v1/channels/").json()["results"]
    assert [row["webhook_signature_failures"] for row in listed] == [30]


def test_intake_signature_failures_reach_the_console_at_once(lazada, hooked, settings):
    from django.contrib.auth import get_user_model

    settings.WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS = 60
    channel = hooked(lazada, "lazada")
    body = lazada_message()
    for _ in range(4):
        post(channel_webhook_url(channel), body, {"Authorization": "0" * 64})
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    staff = Client()
    staff.force_login(user)
    page = staff.get(f"/admin/channels_sync/channel/{channel.pk}/change/").content.decode()
    assert ">4<" in page


def test_intake_bad_signature_when_the_count_cannot_be_written_still_answers_401(
    lazada, hooked, monkeypatch
):
    from django.db import DatabaseError

    # given the database refuses the count's write (simulated at our own flush)
    channel = hooked(lazada, "lazada")

    def refuse(**kwargs):
        raise DatabaseError("the database is read-only")

    monkeypatch.setattr(
        "channels_sync.services.signature_failures.channel_signature_failures_flush", refuse
    )
    body = lazada_message()
    headers = lazada_signed(channel, body) | {"Authorization": "0" * 64}
    # when
    response = post(channel_webhook_url(channel), body, headers)
    # then the marketplace still gets a 401 in the error shape, never a 500
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"


def test_signature_failures_pending_in_the_cache_reach_the_row_with_the_minute_sweep(
    lazada, hooked, settings
):
    from webhooks.tasks import sweep

    # given a burst of bad signatures, only the first written to the row
    settings.WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS = 60
    channel = hooked(lazada, "lazada")
    client = Client()
    for _ in range(5):
        client.post(
            f"/webhooks/lazada/{channel.pk}/",
            lazada_message(),
            content_type="application/json",
            HTTP_AUTHORIZATION="0" * 64,
        )
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 1
    # when the minute sweep runs (nobody read the channel meanwhile)
    sweep.apply()
    # then the row holds all five
    channel.refresh_from_db()
    assert channel.webhook_signature_failures == 5
