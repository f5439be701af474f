"""Demo steps of sales coming back in (marketplace orders over webhooks, and polling) and
of the marketplaces' stock read back (channel reconciliation and its conflicts).

The app itself is served over HTTP on a local port, and each channel's webhook URL points
there. The four marketplace sandboxes place about 200 orders and notify them, signed as each
marketplace signs: some notifications are delivered three times, some arrive out of order
(held back until the order has moved on), five are dropped (only polling finds those
orders), two orders carry an unmapped SKU (parked, then mapped: one by a new listing, one by
staff), and orders are cancelled and shipped. Every order is fetched back from its sandbox
and applied by the order services; the stock they move is pushed to every channel. Printed
per channel: orders, lines reserved, committed and released, orders parked, duplicate
notifications ignored, orders found by polling, and whether every sandbox ends at the
desired quantities.
"""

import random
from collections import Counter

from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.test.utils import override_settings
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.demo import _hold_push, _match, _settle
from channels_sync.models import Channel, ChannelListing, Conflict, ConflictPolicy
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.channels import channel_update
from channels_sync.services.dirty import PENDING_KEY
from channels_sync.services.listings import listings_upsert
from channels_sync.services.push import PushReport
from channels_sync.services.reconcile import channel_reconcile
from core.demo import DemoContext, demo_step
from core.sandbox import SandboxServer
from inventory.models import Product
from orders.models import Order, OrderEvent, OrderLine
from orders.services import Actor, order_line_map
from webhooks.models import WebhookEvent
from webhooks.services.polling import orders_poll_channel

ORDERS_PER_CHANNEL = 50
# (paid, shipped, cancelled) as each marketplace names them.
STATUSES = {
    "shopee": ("READY_TO_SHIP", "SHIPPED", "CANCELLED"),
    "lazada": ("pending", "shipped", "canceled"),
    "tiktok": ("AWAITING_SHIPMENT", "IN_TRANSIT", "CANCELLED"),
    "tokopedia": ("AWAITING_SHIPMENT", "IN_TRANSIT", "CANCELLED"),
}
DROPPED = {"shopee": 2, "lazada": 1, "tiktok": 1, "tokopedia": 1}  # five in all
UNMAPPED = ("shopee", "lazada")  # one parked order each
STAFF = Actor(source="staff", actor="demo:staff")
# Keys no listing has (a product the shop sells that was never mapped here).
UNMAPPED_KEYS = {
    "shopee": {"item_id": "799001", "model_id": "999001"},
    "lazada": {"item_id": "799002", "sku_id": "999002", "seller_sku": "UNMAPPED-LZ"},
}


@demo_step(195, "Orders from the marketplaces, over webhooks and polling")
def orders_over_webhooks(ctx: DemoContext) -> str:
    channels = ctx.facts["channels"]
    # The project itself, served over HTTP for the sandboxes' notifications (the handler,
    # not `get_wsgi_application()`, which would set Django up again and undo the demo's
    # logging).
    app_server = ctx.stack.enter_context(SandboxServer(_served(WSGIHandler())))
    ctx.stack.enter_context(override_settings(PUBLIC_BASE_URL=app_server.url))
    rng = random.Random(195)
    started = timezone.now()
    unmapped_orders, dropped = {}, {}
    total = len(channels) * ORDERS_PER_CHANNEL
    with ctx.progress_bar(total=total, label="orders") as bar:
        for channel, app in channels:
            # Quiet shops for orders (the push step's faults are over), each notification to
            # this channel's webhook URL; pushes wait until every order has come in.
            app.configure(error_ratio=0, throttle_per_second=None, reject=[])
            app.configure(webhook_url=channel_webhook_url(channel))
            _hold_push(channel)
            channel_update(channel=channel, actor="demo", push_enabled=True)
            unmapped_orders[channel.pk], dropped[channel.pk] = _place_orders(channel, app, rng)
            bar.update(sum(len(a.orders) for _, a in channels))
    for channel, app in channels:
        _move_orders(channel, app, rng, skip=dropped[channel.pk])
        app.notifications_release()  # the held notifications arrive last: out of order
    found = {}
    for channel, _app in channels:
        report = orders_poll_channel(channel_id=channel.pk)
        found[channel.pk] = report.outcome
    mapped = _map_parked(channels, unmapped_orders)

    for channel, _ in channels:
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    reports = {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    _settle(ctx, channels, reports)
    for channel, app in channels:
        ctx.say("    " + _channel_line(channel, app, found[channel.pk], since=started))
        # The sandboxes stop with the demo (as after the push step).
        channel_update(channel=channel, actor="demo", push_enabled=False)
    orders = sum(len(app.orders) for _, app in channels)
    return (
        f"{orders} orders from {len(channels)} marketplaces; {mapped} parked order(s) mapped "
        f"and reserved"
    )


def _served(handler: WSGIHandler):
    """The handler, closing its thread's database connections after each request (the
    server runs each request in a thread of its own, which would otherwise keep them)."""

    def app(environ, start_response):
        try:
            return handler(environ, start_response)
        finally:
            connections.close_all()

    return app


def _listing_keys(channel) -> list[dict[str, str]]:
    from channels_sync.adapters import adapter_class

    cls = adapter_class(channel.type)
    return [cls.keys_from_listing(listing) for listing in channel.listings.order_by("pk")]


def _place_orders(channel, app, rng: random.Random) -> tuple[list[str], set[str]]:
    """Place the channel's orders with their delivery faults; return the ids of the unmapped
    ones and of those whose notification was dropped."""
    paid, shipped, _cancelled = STATUSES[channel.type]
    listed = _listing_keys(channel)
    skus = dict(ChannelListing.objects.filter(channel=channel).values_list("pk", "product__sku"))
    by_keys = [
        (keys, skus[pk])
        for keys, pk in zip(
            listed, channel.listings.order_by("pk").values_list("pk", flat=True), strict=True
        )
    ]
    dropped = set(rng.sample(range(ORDERS_PER_CHANNEL), DROPPED[channel.type]))
    unmapped, dropped_ids = [], set()
    for n in range(ORDERS_PER_CHANNEL):
        lines = [
            {"keys": keys, "sku": sku, "quantity": rng.choice([1, 1, 1, 2])}
            for keys, sku in rng.sample(by_keys, rng.choice([1, 1, 2]))
        ]
        if n == 10 and channel.type in UNMAPPED:
            lines.append({"keys": UNMAPPED_KEYS[channel.type], "sku": "UNMAPPED-1", "quantity": 1})
        if n in dropped:
            faults = NotifyFaults(drop=True)
        elif n % 7 == 3:
            faults = NotifyFaults(copies=3)
        elif n % 9 == 5:
            # Held back: it arrives after the order has shipped (out of order).
            order = app.order_create(lines=lines, status=paid, faults=NotifyFaults(hold=True))
            app.order_update(order.order_id, status=shipped)
            continue
        else:
            faults = NotifyFaults()
        order = app.order_create(lines=lines, status=paid, faults=faults)
        if n == 10 and channel.type in UNMAPPED:
            unmapped.append(order.order_id)
        if n in dropped:
            dropped_ids.add(order.order_id)
    return unmapped, dropped_ids


def _move_orders(channel, app, rng: random.Random, *, skip: set[str]) -> None:
    """Cancel some open orders and ship others (each notified once more); the orders whose
    notification was dropped stay as they are, for polling to find."""
    paid, shipped, cancelled = STATUSES[channel.type]
    open_orders = [
        order
        for order in list(app.orders.values())
        if order.status == paid and order.order_id not in skip
    ]
    for order in open_orders:
        roll = rng.random()
        if roll < 0.15:
            app.order_update(order.order_id, status=cancelled)
        elif roll < 0.5:
            app.order_update(order.order_id, status=shipped)


def _map_parked(channels, unmapped_orders: dict[int, list[str]]) -> int:
    """Map the parked orders' unknown lines: one through a new listing, one by staff."""
    mapped = 0
    for index, (channel, app) in enumerate(channels):
        for external_id in unmapped_orders.get(channel.pk, []):
            order = Order.objects.get(channel=channel, external_id=external_id)
            line = order.lines.filter(status=OrderLine.Status.NEEDS_MAPPING).first()
            if line is None:
                continue
            free = (
                Product.objects.filter(vendor=channel.vendor)
                .exclude(listings__channel=channel)
                .order_by("pk")
                .first()
            )
            product = free or Product.objects.filter(vendor=channel.vendor).order_by("pk")[0]
            if index == 0 and free is not None:
                # The shop's item gets a listing: the parked order is reprocessed on commit.
                app.seed_listings([UNMAPPED_KEYS[channel.type]])
                listings_upsert(
                    channel=channel,
                    rows=[{"sku": product.sku, "keys": UNMAPPED_KEYS[channel.type]}],
                    actor="demo",
                )
            else:
                order_line_map(line=line, product=product, actor=STAFF)
            order.refresh_from_db()
            mapped += not order.needs_mapping
    return mapped


def _channel_line(channel, app, poll_outcome: str, *, since) -> str:
    """The channel's figures for this run's orders (a second demo run adds its own)."""
    orders = Order.objects.filter(channel=channel, external_id__in=list(app.orders))
    lines = Counter(OrderLine.objects.filter(order__in=orders).values_list("status", flat=True))
    first_sources = {}
    for order_id, source in (
        OrderEvent.objects.filter(order__in=orders).order_by("pk").values_list("order_id", "source")
    ):
        first_sources.setdefault(order_id, source)
    by_poll = sum(1 for source in first_sources.values() if source == OrderEvent.Source.POLL)
    # Acknowledged deliveries (eBay answers 204, the others 200).
    delivered = sum(1 for d in app.deliveries if 200 <= (d.http_status or 0) < 300)
    stored = WebhookEvent.objects.filter(channel=channel, received_at__gte=since).count()
    parked = orders.filter(events__kind=OrderEvent.Kind.PARKED).distinct().count()
    return (
        f"{channel.name:<17} orders {orders.count():>3}, lines reserved "
        f"{lines['reserved'] + lines['short']:>3}, committed {lines['committed']:>3}, "
        f"released {lines['released']:>3}; parked {parked}; duplicates ignored "
        f"{delivered - stored:>2}; found by polling {by_poll} (poll {poll_outcome}); "
        f"{_match(channel, app)}"
    )


# The stock each edited listing is set to behind our back (its pushed figure plus this).
EDIT_DELTA = 3


@demo_step(199, "Channel reconciliation and conflicts")
def channel_reconciliation(ctx: DemoContext) -> str:
    """Edit stock in two marketplace sandboxes behind our back, read every channel back.

    The first channel keeps the `use_ours` policy (its conflict is resolved by pushing our
    figure again), the second is set to `manual` (its conflict waits for a person). Every
    channel is reconciled; the conflicts it opened or updated are printed as they stand
    after the run. Each channel's policy and push switch are restored at the end, so a second
    demo run on the same database starts from the same settings (the manual conflict it left
    open is updated then, and still counted).
    """
    channels = ctx.facts["channels"]
    (ours_channel, ours_app), (manual_channel, manual_app) = channels[0], channels[1]
    # Each channel's settings as they were, put back at the end of the step.
    before = {
        channel.pk: Channel.objects.values("conflict_policy", "push_enabled").get(pk=channel.pk)
        for channel, _app in channels
    }
    channel_update(channel=ours_channel, actor="demo", conflict_policy=ConflictPolicy.USE_OURS)
    channel_update(channel=manual_channel, actor="demo", conflict_policy=ConflictPolicy.MANUAL)
    # Pushes on (a resolution using our figure sends it). Switching them changes what the
    # channels sharing a product may sell: their listings are marked, and settled here, so
    # that every listing is clean when it is read back.
    for channel, _app in channels:
        channel_update(channel=channel, actor="demo", push_enabled=True)
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    _settle(
        ctx, channels, {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    )
    for channel, app in ((ours_channel, ours_app), (manual_channel, manual_app)):
        listing = (
            ChannelListing.objects.filter(
                channel=channel, dirty=False, status="ok", last_pushed_quantity__isnull=False
            )
            .order_by("pk")
            .first()
        )
        keys = adapter_class(channel.type).keys_from_listing(listing)
        app.stock_set_external(keys, listing.last_pushed_quantity + EDIT_DELTA, notify=False)
        ctx.say(
            f"    {channel.name:<17} listing {listing.pk}: we pushed "
            f"{listing.last_pushed_quantity}, the seller set {app.quantity(keys)} in the "
            f"marketplace's console"
        )
    # This run's conflicts are the ones its reconciliations opened or updated: a conflict
    # a previous demo run left open for manual review is seen again and updated, not opened
    # (and keeps its first detection time).
    conflict_ids = []
    for channel, _app in channels:
        # The orders step has settled: no sale is in flight, so no confirming wait is needed.
        report = channel_reconcile(channel_id=channel.pk, trigger="demo", settle_seconds=0)
        conflict_ids += report.conflict_ids
        ctx.say(
            f"    {channel.name:<17} read {report.read:>3}, matching {report.matching:>3}, "
            f"conflicts opened {report.conflicts_opened}, updated {report.conflicts_updated} "
            f"(policy {_policy(channel)})"
        )
    conflicts = Conflict.objects.filter(pk__in=conflict_ids).order_by("pk")
    resolved, manual, unresolved = [], 0, 0
    apps = {channel.pk: app for channel, app in channels}
    for conflict in conflicts.select_related("channel", "listing"):
        app = apps[conflict.channel_id]
        shown = app.quantity(
            adapter_class(conflict.channel.type).keys_from_listing(conflict.listing)
        )
        ctx.say(
            f"    conflict {conflict.pk} on {conflict.channel.name}: ours {_whole(conflict.ours)}, "
            f"theirs {_whole(conflict.theirs)}; {conflict.get_status_display()}; the sandbox "
            f"shows {shown}"
        )
        if conflict.status == Conflict.Status.AUTO_RESOLVED:
            resolved.append(shown)
        elif conflict.status == Conflict.Status.OPEN:
            if conflict.channel.conflict_policy == ConflictPolicy.MANUAL:
                manual += 1
            else:
                unresolved += 1  # the channel's policy has not settled it (yet)
    for channel, _app in channels:
        channel_update(channel=channel, actor="demo", **before[channel.pk])
    parts = []
    if resolved:
        back = ", ".join(str(quantity) for quantity in resolved)
        parts.append(f"{len(resolved)} auto-resolved (pushed ours: sandbox back at {back})")
    if manual:
        parts.append(f"{manual} open for manual review")
    if unresolved:
        parts.append(f"{unresolved} open under an automatic policy")
    return f"{conflicts.count()} conflicts: " + ", ".join(parts or ["none"])


def _whole(value) -> str:
    """A quantity without trailing zeros (28, 2.5)."""
    return "" if value is None else format(value.normalize(), "f")


def _policy(channel) -> str:
    return Channel.objects.get(pk=channel.pk).get_conflict_policy_display()
