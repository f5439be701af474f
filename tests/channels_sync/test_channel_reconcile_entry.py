"""Ways to start a channel reconciliation: the API, the admin action, the command, the beat
schedule's task; and the adapters' read calls against their sandboxes."""

import io
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from channels_sync import tasks
from channels_sync.adapters import AdapterError, Outcome
from channels_sync.models import Channel, Conflict
from channels_sync.services.push import channel_push
from channels_sync.services.tokens import channel_adapter
from config.celery import app as celery_app
from inventory.services import Origin, stock_set
from tests.channels_sync.conftest import listing_keys
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")
FAST = {"CHANNEL_THROTTLE_WAIT_SECONDS": 0.05, "CHANNEL_RECONCILE_SETTLE_SECONDS": 0}


@pytest.fixture
def edited(shopee, wire, warehouse) -> Channel:
    """A pushed Shopee channel (5 and 6) whose second listing was set to 2 behind our back."""
    products = []
    for quantity in (5, 6):
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        products.append(product)
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    assert channel_push(channel_id=channel.pk).pushed == 2
    shopee.app.stock_set_external(listing_keys("shopee", 1), 2, notify=False)
    return channel


@override_settings(**FAST)
def test_api_reconcile_queues_a_run(edited, make_client):
    client = make_client(("write",))

    response = client.post(f"/api/v1/channels/{edited.pk}/reconcile/")

    assert response.status_code == 202
    assert response.json() == {"channel_id": edited.pk, "queued": True}
    # tasks run eagerly in the tests: the run is done
    assert Conflict.objects.get().theirs == Decimal(2)


def test_api_reconcile_errors_in_the_error_shape(edited, make_client):
    missing = make_client(("write",)).post("/api/v1/channels/999999/reconcile/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "channel_not_found"
    assert "correlation_id" in missing.json()
    read_only = make_client(("read",)).post(f"/api/v1/channels/{edited.pk}/reconcile/")
    assert read_only.status_code == 403
    assert not Conflict.objects.exists()


def test_api_reconcile_queue_down_is_503(edited, make_client, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.reconcile_channel, "apply_async", refuse)

    response = make_client(("write",)).post(f"/api/v1/channels/{edited.pk}/reconcile/")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"


@override_settings(**FAST)
def test_admin_reconcile_now_action(edited):
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)

    page = client.post(
        "/admin/channels_sync/channel/",
        {"action": "reconcile_now", "_selected_action": [edited.pk]},
        follow=True,
    )

    assert "Stock reconciliation queued for 1 channel(s)" in page.content.decode()
    assert Conflict.objects.filter(channel=edited).count() == 1


def test_admin_reconcile_now_needs_the_change_permission(edited):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_channel"))
    client = Client()
    client.force_login(user)

    page = client.get("/admin/channels_sync/channel/")

    assert page.status_code == 200
    assert "reconcile_now" not in page.content.decode()


@override_settings(**FAST)
def test_command_prints_the_report(edited):
    out = io.StringIO()

    call_command("channel_reconcile", "--channel", str(edited.pk), stdout=out)

    text = out.getvalue()
    assert f"channel {edited.pk} (" in text
    assert "2 read, 1 matching, 1 mismatched, 1 conflicts opened" in text
    assert "0 not found on the marketplace" in text
    with pytest.raises(CommandError):
        call_command("channel_reconcile", "--channel", "999999", stdout=io.StringIO())


@override_settings(**FAST)
def test_command_fails_for_a_channel_that_cannot_be_read(edited, shopee):
    shopee.app.revoke()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("channel_reconcile", stdout=out)
    assert "(stopped: needs_reauth)" in out.getvalue()


@override_settings(**FAST)
def test_beat_task_queues_every_active_channel(edited, wire, shopee):
    inactive = wire(shopee, "shopee", active=False)
    flagged = wire(shopee, "shopee", needs_reauth=True)

    queued = tasks.reconcile_channels()

    assert edited.pk in queued
    assert inactive.pk not in queued
    assert flagged.pk not in queued
    assert celery_app.conf.task_routes["channels_sync.reconcile_channel"] == {"queue": "default"}
    assert Conflict.objects.filter(channel=edited).count() == 1


# --- the adapters' read calls -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "keys", "size", "groups"),
    [
        # Shopee: one call per item with models; items without models 50 a call
        (
            "shopee",
            [
                {"item_id": "1", "model_id": "11"},
                {"item_id": "2", "model_id": "0"},
                {"item_id": "1", "model_id": "12"},
                {"item_id": "3", "model_id": "0"},
            ],
            50,
            [["1:11", "1:12"], ["2:0", "3:0"]],
        ),
        # Lazada: GetProductItem reads one item
        (
            "lazada",
            [
                {"item_id": "1", "sku_id": "11"},
                {"item_id": "2", "sku_id": "21"},
                {"item_id": "1", "sku_id": "12"},
            ],
            50,
            [["1:11", "1:12"], ["2:21"]],
        ),
        # TikTok: any SKUs, up to the batch
        (
            "tiktok",
            [
                {"product_id": "1", "sku_id": "11"},
                {"product_id": "2", "sku_id": "21"},
                {"product_id": "1", "sku_id": "12"},
            ],
            2,
            [["1:11", "2:21"], ["1:12"]],
        ),
    ],
)
def test_adapter_read_batches(request, wire, kind, keys, size, groups):
    channel = wire(request.getfixturevalue(kind), kind)
    adapter = channel_adapter(channel)

    batches = adapter.read_batches(keys, size)

    assert [[":".join(list(k.values())[:2]) for k in batch] for batch in batches] == groups


@pytest.mark.parametrize("kind", ["shopee", "lazada", "tiktok", "tokopedia"])
def test_adapter_fetch_stock_against_its_sandbox(request, wire, kind):
    server = request.getfixturevalue(kind)
    channel = wire(server, kind, products=[ProductFactory(), ProductFactory()])
    server.app.stock_set_external(listing_keys(kind, 0), 4, notify=False)
    adapter = channel_adapter(channel)
    variant = list(listing_keys(kind, 0))[1]  # model_id or sku_id
    ghost = {**listing_keys(kind, 0), variant: "424242"}
    ghost.pop("seller_sku", None)  # Lazada would find the listing by its seller SKU

    observed = adapter.fetch_stock([listing_keys(kind, 0), listing_keys(kind, 1), ghost])

    assert [(o.keys, o.quantity) for o in observed] == [
        (listing_keys(kind, 0), 4),
        (listing_keys(kind, 1), 0),
    ]


@pytest.mark.parametrize("kind", ["shopee", "lazada", "tiktok"])
def test_adapter_fetch_stock_throttled_and_expired_are_classified(request, wire, kind):
    server = request.getfixturevalue(kind)
    channel = wire(server, kind, products=[ProductFactory()])
    adapter = channel_adapter(channel)
    server.app.configure(throttle_per_second=0)
    with pytest.raises(AdapterError) as throttled:
        adapter.fetch_stock([listing_keys(kind, 0)])
    assert throttled.value.outcome == Outcome.THROTTLED
    server.app.configure(throttle_per_second=None)
    server.app.expire_tokens()
    with pytest.raises(AdapterError) as expired:
        adapter.fetch_stock([listing_keys(kind, 0)])
    assert (expired.value.outcome, expired.value.token_expired) == (Outcome.AUTH, True)


def test_sandbox_control_route_edits_stock_behind_our_back(shopee, wire):
    import requests

    wire(shopee, "shopee", products=[ProductFactory()])
    url = f"{shopee.url}/_sandbox/stock"

    done = requests.post(
        url, json={"keys": listing_keys("shopee", 0), "quantity": 7, "notify": False}, timeout=5
    )
    unknown = requests.post(
        url, json={"keys": {"item_id": "1", "model_id": "2"}, "quantity": 1}, timeout=5
    )
    negative = requests.post(
        url, json={"keys": listing_keys("shopee", 0), "quantity": -1}, timeout=5
    )

    assert (done.status_code, done.json()) == (200, {"quantity": 7, "delivery": None})
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 7
    assert (unknown.status_code, negative.status_code) == (404, 400)
    assert shopee.app.counts["external_edits"] == 1


def test_channel_conflict_policy_is_changed_through_the_service(wire, shopee):
    from channels_sync.models import ConflictPolicy
    from channels_sync.services.channels import channel_update
    from core.errors import DomainError

    channel = wire(shopee, "shopee")

    channel_update(channel=channel, actor="test", conflict_policy=ConflictPolicy.MANUAL)

    channel.refresh_from_db()
    assert channel.conflict_policy == ConflictPolicy.MANUAL
    with pytest.raises(DomainError) as refused:
        channel_update(channel=channel, actor="test", conflict_policy="coin_flip")
    assert refused.value.code == "invalid_conflict_policy"
