"""A late sale is not an edit behind our back: a stock mismatch where the channel shows less
than we pushed waits for the channel's order poll before the policy resolves it."""

from decimal import Decimal

import pytest

from channels_sync.models import Channel, Conflict, ConflictPolicy
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.conflict_resolution import conflict_auto_resolve
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import channel_reconcile
from inventory.models import Reservation
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.services.polling import orders_poll_channel

pytestmark = pytest.mark.django_db(transaction=True)


def test_late_sale_waits_for_the_order_poll_then_use_ours_pushes_what_is_left(
    tiktok, hooked, stocked, warehouse, settings
):
    # given a channel resolving stock conflicts with `use_ours`, its listing pushed at 10
    settings.CHANNEL_RECONCILE_SETTLE_SECONDS = 0
    product = stocked(10)
    channel = hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product], dirty=True)
    Channel.objects.filter(pk=channel.pk).update(conflict_policy=ConflictPolicy.USE_OURS)
    assert channel_push(channel_id=channel.pk).pushed == 1
    keys = listing_keys("tiktok", 0)

    # and a sale of 2 on the marketplace whose notification is lost: it shows 8
    order = tiktok.app.order_create(
        lines=[{"keys": keys, "sku": "SKU-0", "quantity": 2}],
        status="AWAITING_SHIPMENT",
        faults=NotifyFaults(drop=True),
    )
    tiktok.app.stock_set_external(keys, 8, notify=False)

    # when the reconciliation sees 8 where we pushed 10
    report = channel_reconcile(channel_id=channel.pk, trigger="test")

    # then the conflict opens, and its automatic resolution is held back (no 10 pushed)
    assert report.conflicts_opened == 1
    conflict = Conflict.objects.get()
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", 10, 8)
    assert conflict_auto_resolve(conflict_id=conflict.pk) == "deferred"
    assert tiktok.app.quantity(keys) == 8

    # when the order poll applies the sale
    poll = orders_poll_channel(channel_id=channel.pk)

    # then the sale is reserved, the held conflict resolved by the policy, and the channel
    # shows what is left to sell: the sold units are not back on sale
    assert (poll.outcome, poll.applied) == ("ok", 1)
    assert Order.objects.filter(channel=channel, external_id=order.order_id).exists()
    assert Reservation.objects.get(level__product=product).quantity == Decimal(2)
    conflict.refresh_from_db()
    assert conflict.status == Conflict.Status.AUTO_RESOLVED
    assert tiktok.app.quantity(keys) == 8


def test_late_sale_stays_held_while_an_order_of_the_channel_is_still_to_apply(
    tiktok, hooked, stocked, warehouse, settings
):
    # given a use_ours channel whose listing shows 8 where we pushed 10
    from django.utils import timezone

    from webhooks.models import WebhookEvent

    settings.CHANNEL_RECONCILE_SETTLE_SECONDS = 0
    product = stocked(10)
    channel = hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product], dirty=True)
    Channel.objects.filter(pk=channel.pk).update(conflict_policy=ConflictPolicy.USE_OURS)
    assert channel_push(channel_id=channel.pk).pushed == 1
    keys = listing_keys("tiktok", 0)
    tiktok.app.stock_set_external(keys, 8, notify=False)
    report = channel_reconcile(channel_id=channel.pk, trigger="test")
    assert report.conflicts_opened == 1
    conflict = Conflict.objects.get()

    # and an order the last poll listed but could not apply (kept as an event to retry),
    # while the poll's cursor moved past the observation
    event = WebhookEvent.objects.create(
        channel=channel,
        source=WebhookEvent.Source.POLL,
        topic="order",
        event_key="poll:ORDER-1:v1",
        order_id="ORDER-1",
        body=b"{}",
        status=WebhookEvent.Status.RECEIVED,
    )
    Channel.objects.filter(pk=channel.pk).update(orders_cursor=timezone.now())

    # then the policy still waits: that order may be the sale
    assert conflict_auto_resolve(conflict_id=conflict.pk) == "deferred"
    assert tiktok.app.quantity(keys) == 8

    # once it is applied (here: processed), the policy resolves it
    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.PROCESSED)
    assert conflict_auto_resolve(conflict_id=conflict.pk) == "resolved"
