"""Demo step of the other channel types: Shopify, Amazon, eBay, Square and a custom REST shop.

One channel of each type is set up on its own sandbox with listings for some of the demo's
T-shirts, pushed while each sandbox throttles and fails in its own way (Shopify's cost
bucket and a 429, Amazon's outages while its first push goes as a feed, eBay one SKU per call
under a throttle, Square's and the REST shop's rate limits, a SKU the REST shop locks), then
sells about ten orders:
notified by webhook, signed as each platform signs (Shopify, eBay, Square, the REST shop;
one notification delivered three times, one dropped for polling to find), or found by
polling alone (Amazon, which sends no HTTP notifications). Orders are cancelled and shipped,
the stock they moved is pushed, and each channel's figures are printed like the
marketplaces' (`webhooks.demo`).
"""

import random

from django.core.cache import cache
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.demo import _hold_push, _match, _settle
from channels_sync.models import Channel
from channels_sync.sandbox import (
    AmazonSandbox,
    EbaySandbox,
    RestShopSandbox,
    ShopifySandbox,
    SquareSandbox,
)
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.sandbox.rest_options import BATCH
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.channels import channel_create, channel_update, rule_set
from channels_sync.services.dirty import PENDING_KEY
from channels_sync.services.listings import listings_upsert
from channels_sync.services.push import PushReport
from core.demo import DemoContext, demo_step
from core.sandbox import Fault, SandboxServer
from inventory.models import Product
from orders.models import Order
from webhooks.demo import _channel_line
from webhooks.services.polling import orders_poll_channel

LISTINGS = 24  # Amazon's first push of more than AMAZON_FEED_THRESHOLD (20) goes as a feed
ORDERS = 10
SHOPIFY_LOCATION = "62000001"
SQUARE_LOCATION = "LSANDBOXMAIN01"
# (name, type, sandbox, priority, rule, options)
CHANNELS = (
    ("Shopify Store", "shopify", ShopifySandbox, 50, {"strategy": "all", "buffer_units": 1}, {}),
    ("Amazon US", "amazon", AmazonSandbox, 60, {"strategy": "percentage", "parameter": 50}, {}),
    ("eBay US", "ebay", EbaySandbox, 70, {"strategy": "percentage", "parameter": 40}, {}),
    ("Square POS", "square", SquareSandbox, 80, {"strategy": "all"}, {}),
    ("Own web shop", "rest", RestShopSandbox, 90, {"strategy": "all", "buffer_units": 2}, BATCH),
)
# Each sandbox's faults for the push: the shared error ratio and throttle, and its own.
FAULTS = {
    # A small cost bucket: a few mutations, then THROTTLED until it refills.
    "shopify": {"error_ratio": 0.2, "seed": 11, "cost_maximum": 60.0, "cost_restore_rate": 50.0},
    "amazon": {"error_ratio": 0.2, "seed": 13},
    "ebay": {"error_ratio": 0.2, "throttle_per_second": 15, "seed": 17},
    "square": {"error_ratio": 0.25, "throttle_per_second": 4, "seed": 19},
    "rest": {"error_ratio": 0.2, "throttle_per_second": 3, "seed": 23},  # and one locked SKU
}
# Whatever the random draws, each push starts with a throttle or an outage.
FIRST_ANSWERS = {
    "shopify": Fault(
        status=429, count=1, body='{"errors": "Throttled"}', headers={"Retry-After": "0.2"}
    ),
    "amazon": Fault(
        status=503,
        count=1,
        body='{"errors": [{"code": "ServiceUnavailable", "message": "Try again."}]}',
    ),
    "ebay": Fault(status=500, count=1, body='{"errors": [{"errorId": 25001}]}'),
    "square": Fault(
        status=429,
        count=1,
        body='{"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED"}]}',
    ),
    "rest": Fault(status=503, count=1, body="Service Unavailable"),
}
# Quiet shops for the orders: no faults, and Shopify's standard cost bucket.
QUIET = {"error_ratio": 0, "throttle_per_second": None, "reject": []}
QUIET_EXTRA = {"shopify": {"cost_maximum": 2000.0, "cost_restore_rate": 100.0}}
# (paid, shipped, cancelled) as each platform names them.
STATUSES = {
    "shopify": ("PAID", "FULFILLED", "CANCELLED"),
    "amazon": ("Unshipped", "Shipped", "Canceled"),
    "ebay": ("PAID", "FULFILLED", "CANCELED"),
    "square": ("OPEN", "COMPLETED", "CANCELED"),
    "rest": ("paid", "shipped", "cancelled"),
}
COPIED, DROPPED = 3, 6  # the order notified three times, the one whose notification is lost
CANCELLED, SHIPPED = (1,), (2, 4)
# Amazon's getOrders lists nothing updated in the last two minutes: its orders are stamped
# this many seconds in the past, so the poll's window reaches them.
AMAZON_ORDER_AGE = 150


def _keys(kind: str, n: int, sku: str) -> dict[str, str]:
    if kind == "shopify":
        return {"inventory_item_id": str(44000000 + n), "location_id": SHOPIFY_LOCATION}
    if kind == "amazon":
        return {"seller_sku": sku}
    if kind == "ebay":
        return {"sku": sku, "offer_id": str(8000000 + n)}
    if kind == "square":
        return {"catalog_object_id": f"SQDEMO{n:06d}", "location_id": SQUARE_LOCATION}
    return {"sku": sku}


def _channel(ctx: DemoContext, vendor, spec, index: int, products) -> tuple[Channel, object]:
    """The channel of `spec` on a new sandbox (updated when a previous run made it), its
    listings known to the shop at 0 and mapped here."""
    name, kind, sandbox_class, priority, rule, options = spec
    app = sandbox_class()
    server = ctx.stack.enter_context(SandboxServer(app))
    fields = {
        "base_url": server.url,
        "auth_base_url": server.url,
        "priority": priority,
        "rate_limit_per_second": 40.0,
        "rate_limit_burst": 10,
        "push_enabled": True,
        "options": options,
    }
    channel = Channel.objects.filter(vendor=vendor, name=name).first()
    # Set-up changes would push at once (eager mode): hold them for the push below.
    if channel is None:
        channel = channel_create(
            vendor=vendor,
            name=name,
            type=kind,
            credentials=app.credentials(),
            warehouses=["MAIN"],
            actor="demo",
            **fields,
        )
    else:
        _hold_push(channel)
        channel = channel_update(
            channel=channel,
            actor="demo",
            credentials=app.credentials(),
            warehouses=["MAIN"],
            **fields,
        )
    _hold_push(channel)
    rule_set(channel=channel, actor="demo", **rule)
    # Each channel sells its own window of the T-shirts (they overlap in a small catalogue).
    start = (index * LISTINGS) % max(1, len(products) - LISTINGS + 1)
    rows = [
        {"sku": product.sku, "keys": _keys(kind, start + n, product.sku)}
        for n, product in enumerate(products[start : start + LISTINGS])
    ]
    app.seed_listings(row["keys"] for row in rows)
    result = listings_upsert(channel=channel, rows=rows, actor="demo")
    if result.counts().get("invalid"):
        raise RuntimeError(f"{name}: listing rows refused: {result.rows[:3]}")
    return channel, app


@demo_step(196, "More channels (Shopify, Amazon, eBay, Square, custom REST shop)")
def more_channels(ctx: DemoContext) -> str:
    """Set up the five channels, push through faults, sell, poll, settle; print each one's
    figures. A second run updates the channels (new sandboxes) and sells ten more orders."""
    vendor = ctx.facts["warehouses"]["MAIN"].vendor
    products = list(
        Product.objects.filter(vendor=vendor, variant_group__startswith="TEE-").order_by(
            "variant_group", "pk"
        )
    )
    started = timezone.now()
    channels = [_channel(ctx, vendor, spec, index, products) for index, spec in enumerate(CHANNELS)]

    # The push, through each sandbox's faults.
    for channel, app in channels:
        app.configure(**FAULTS[channel.type])
        if channel.type in FIRST_ANSWERS:
            app.inject(FIRST_ANSWERS[channel.type])
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    amazon_channel = channels[1][0]
    rest_channel, rest_app = channels[-1]
    locked = rest_channel.listings.order_by("pk").first()
    rest_app.configure(reject=[adapter_class("rest").keys_from_listing(locked)])
    reports = {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    _settle(ctx, channels, reports)
    for channel, app in channels:
        report = reports[channel.pk]
        ctx.say(
            f"    {channel.name:<17} pushed {report.pushed:>3} in {report.calls:>3} calls, "
            f"throttled {report.throttled:>2}, retried {report.retried:>2}, "
            f"dead-lettered {report.dead_lettered}; {_match(channel, app)}"
        )

    # Orders: notified to the channel's webhook URL, served by the app the marketplace orders
    # step serves (its PUBLIC_BASE_URL holds for the rest of the demo); Amazon: polling only.
    rng = random.Random(ctx.options["seed"] + 196)
    # The pushes wait until every order has come in (the channels share products).
    for channel, _ in channels:
        _hold_push(channel)
    for channel, app in channels:
        app.configure(**QUIET, **QUIET_EXTRA.get(channel.type, {}))
        # A new sandbox stands in for the same shop: its order numbers go on from the last run.
        app.orders_numbered_after(Order.objects.filter(channel=channel).count())
        if channel.type == "amazon":
            app.configure(order_age=AMAZON_ORDER_AGE)
        else:
            app.configure(webhook_url=channel_webhook_url(channel))
        _place_orders(channel, app, rng)
    # Amazon's orders are seen paid first (they reserve), as a poll between sales and
    # shipments finds them.
    orders_poll_channel(channel_id=amazon_channel.pk)
    for channel, app in channels:
        _, shipped, cancelled = STATUSES[channel.type]
        order_ids = list(app.orders)
        for n in CANCELLED:
            app.order_update(order_ids[n], status=cancelled)
        for n in SHIPPED:
            app.order_update(order_ids[n], status=shipped)
    # A poll finds what no notification told (the dropped one, eBay's cancellations, every
    # Amazon order).
    polls = {channel.pk: orders_poll_channel(channel_id=channel.pk) for channel, _ in channels}

    # The settle push of the stock the orders moved; then the sandboxes stop with the demo.
    for channel, _ in channels:
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    reports = {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    _settle(ctx, channels, reports)
    for channel, app in channels:
        ctx.say("    " + _channel_line(channel, app, polls[channel.pk].outcome, since=started))
        channel_update(channel=channel, actor="demo", push_enabled=False)
    orders = sum(len(app.orders) for _, app in channels)
    listings = sum(channel.listings.count() for channel, _ in channels)
    return (
        f"{len(channels)} channels, {listings} listings, {orders} orders; channels left with "
        f"push disabled (their sandboxes stop with the demo)"
    )


def _place_orders(channel: Channel, app, rng: random.Random) -> None:
    """The channel's orders, paid, of one or two of its listings each: one notified three
    times (`COPIED`), one whose notification is dropped (`DROPPED`)."""
    paid, _, _ = STATUSES[channel.type]
    cls = adapter_class(channel.type)
    listed = [
        (cls.keys_from_listing(listing), listing.product.sku)
        for listing in channel.listings.select_related("product").order_by("pk")
    ]
    for n in range(ORDERS):
        lines = [
            {"keys": keys, "sku": sku, "quantity": rng.choice([1, 1, 2])}
            for keys, sku in rng.sample(listed, rng.choice([1, 1, 2]))
        ]
        if n == COPIED:
            faults = NotifyFaults(copies=3)
        elif n == DROPPED:
            faults = NotifyFaults(drop=True)
        else:
            faults = NotifyFaults()
        app.order_create(lines=lines, status=paid, faults=faults)
