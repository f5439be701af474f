"""Demo steps of the marketplace channels, against the four marketplace sandboxes.

Shopee, Lazada, TikTok Shop and Tokopedia & Shop channels are set up on their sandboxes with
listings for the demo's first T-shirt groups (one marketplace item per group, one variant
per size) and a different allocation rule each. A first push sends every listing; then the
stock changes, the sandboxes start throttling, failing and rejecting, and the push runs
until every listing is settled. Each channel's figures are printed, with whether its
sandbox ended at the desired quantities.
"""

import random
from decimal import Decimal

from django.core.cache import cache
from django.test.utils import override_settings

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel, ChannelListing
from channels_sync.sandbox import LazadaSandbox, ShopeeSandbox, TikTokSandbox, TokopediaSandbox
from channels_sync.services.channels import channel_create, channel_update, rule_set
from channels_sync.services.dirty import PENDING_KEY
from channels_sync.services.listings import listings_upsert
from channels_sync.services.push import PushReport, channel_push
from core.demo import DemoContext, demo_step
from core.sandbox import Fault, SandboxServer
from inventory import services
from inventory.models import Product

GROUPS = 40
SIZES = 5
CHANGES = 150
ORIGIN = services.Origin(source="demo", actor="system:demo")
# (name, type, sandbox, warehouses, priority, rule)
CHANNELS = (
    ("Shopee ID", "shopee", ShopeeSandbox, ("MAIN",), 10, {"strategy": "all", "buffer_units": 2}),
    (
        "Lazada ID",
        "lazada",
        LazadaSandbox,
        ("MAIN", "STORE"),
        20,
        {"strategy": "percentage", "parameter": 60},
    ),
    ("TikTok Shop", "tiktok", TikTokSandbox, ("MAIN",), 30, {"strategy": "equal_split"}),
    ("Tokopedia & Shop", "tokopedia", TokopediaSandbox, ("MAIN",), 40, {"strategy": "equal_split"}),
)
# The faults each sandbox injects for the second push.
FAULTS = {
    "shopee": {"throttle_per_second": 10},
    "lazada": {"error_ratio": 0.3, "seed": 3},
    "tiktok": {"error_ratio": 0.2, "throttle_per_second": 12, "seed": 5},
    "tokopedia": {},  # plus one listing it refuses (below)
}
FIRST_ANSWERS = {
    "shopee": [
        Fault(
            status=429,
            count=2,
            body='{"error": "error_too_many_request", "message": "Too many requests."}',
            headers={"Retry-After": "0.2"},
        )
    ],
    "lazada": [Fault(status=503, count=2, body="Service Unavailable")],
    "tiktok": [
        Fault(status=429, count=1, body='{"code": 36009002, "message": "Too many requests"}')
    ],
}
FAST_RETRIES = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.05,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.2,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.5,
}


def _keys(kind: str, group: int, size: int) -> dict[str, str]:
    item, variant = str(700000 + group), str(900000 + group * 10 + size)
    if kind == "shopee":
        return {"item_id": item, "model_id": variant}
    if kind == "lazada":
        return {"item_id": item, "sku_id": variant}
    return {"product_id": item, "sku_id": variant}


@demo_step(180, "Marketplace channels (Shopee, Lazada, TikTok Shop, Tokopedia & Shop)")
def set_up_channels(ctx: DemoContext) -> str:
    warehouses = ctx.facts["warehouses"]
    vendor = warehouses["MAIN"].vendor
    products = list(
        Product.objects.filter(vendor=vendor, variant_group__startswith="TEE-").order_by(
            "variant_group", "pk"
        )[: GROUPS * SIZES]
    )
    channels = []
    for name, kind, sandbox_class, codes, priority, rule in CHANNELS:
        app = sandbox_class()
        server = ctx.stack.enter_context(SandboxServer(app))
        fields = {
            "base_url": server.url,
            "auth_base_url": server.url,
            "priority": priority,
            "rate_limit_per_second": 20.0,
            "rate_limit_burst": 5,
            "push_enabled": True,
        }
        channel = Channel.objects.filter(vendor=vendor, name=name).first()
        # Set-up changes would push at once (eager mode): hold them for the next step's
        # push, as if one were queued.
        if channel is not None:
            _hold_push(channel)
        if channel is None:
            channel = channel_create(
                vendor=vendor,
                name=name,
                type=kind,
                credentials=app.credentials(),
                warehouses=list(codes),
                actor="demo",
                **fields,
            )
        else:
            channel = channel_update(
                channel=channel,
                actor="demo",
                credentials=app.credentials(),
                warehouses=list(codes),
                **fields,
            )
        _hold_push(channel)
        rule_set(channel=channel, actor="demo", **rule)
        rows = []
        for index, product in enumerate(products):
            group, size = divmod(index, SIZES)
            rows.append({"sku": product.sku, "keys": _keys(kind, group, size)})
        # The shop lists the items before we map them (new listings are pushed at once).
        app.seed_listings(row["keys"] for row in rows)
        result = listings_upsert(channel=channel, rows=rows, actor="demo")
        if result.counts().get("invalid"):
            raise RuntimeError(f"listing rows refused: {result.rows[:3]}")
        channels.append((channel, app))
    ctx.facts["channels"] = channels
    ctx.facts["channel_products"] = products
    return (
        f"{len(channels)} channels on their sandboxes, {len(products)} listings each "
        f"({GROUPS} items x {SIZES} sizes); rules: all less 2, 60%, equal split x 2"
    )


def _settle(ctx: DemoContext, channels, reports: dict[int, PushReport], rounds: int = 15) -> None:
    """Push every channel until nothing is due (retries run at once, not after backoff)."""
    waiting = ChannelListing.objects.filter(
        channel__in=[channel for channel, _ in channels], dirty=True, status="ok"
    )
    total = waiting.count()
    with override_settings(**FAST_RETRIES), ctx.progress_bar(total=total, label="listings") as bar:
        for _ in range(rounds):
            for channel, _app in channels:
                reports[channel.pk].add(channel_push(channel_id=channel.pk, respect_backoff=False))
                bar.update(max(0, total - waiting.count()))
            if not waiting.exists():
                return


@demo_step(185, "First push to the marketplaces")
def first_push(ctx: DemoContext) -> str:
    channels = ctx.facts["channels"]
    for channel, _ in channels:
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    reports = {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    _settle(ctx, channels, reports)
    for channel, app in channels:
        report = reports[channel.pk]
        ctx.say(
            f"    {channel.name:<17} pushed {report.pushed:>3}, unchanged {report.unchanged:>3}, "
            f"{report.calls} calls; {_match(channel, app)}"
        )
    return f"{sum(r.pushed for r in reports.values())} listings pushed"


@demo_step(190, "Stock changes, pushed through throttling and errors")
def push_through_faults(ctx: DemoContext) -> str:
    channels = ctx.facts["channels"]
    products = ctx.facts["channel_products"]
    warehouses = ctx.facts["warehouses"]
    rng = random.Random(ctx.options["seed"])
    # A push per channel stands queued (as a worker would have it): the changes below
    # ride on it instead of each queueing another.
    for channel, _ in channels:
        _hold_push(channel)
    changed = rng.sample(products, min(CHANGES, len(products)))
    for product in changed:
        _adjust(product, warehouses["MAIN"], rng)
    dirty = ChannelListing.objects.filter(channel__in=[c for c, _ in channels], dirty=True).count()
    for channel, app in channels:
        app.configure(**FAULTS[channel.type])
        # And, whatever the random draws, the first answers are a throttle or an outage.
        for fault in FIRST_ANSWERS.get(channel.type, ()):
            app.inject(fault)
        cache.delete(PENDING_KEY.format(channel_id=channel.pk))
    tokopedia_channel, tokopedia_app = channels[3]
    victim = tokopedia_channel.listings.order_by("pk").first()
    tokopedia_app.configure(reject=[adapter_class("tokopedia").keys_from_listing(victim)])
    reports = {channel.pk: PushReport(channel_id=channel.pk) for channel, _ in channels}
    _settle(ctx, channels, reports)
    for channel, app in channels:
        report = reports[channel.pk]
        ctx.say(
            f"    {channel.name:<17} pushed {report.pushed:>3}, unchanged {report.unchanged:>3}, "
            f"throttled {report.throttled:>2}, retried {report.retried:>2}, "
            f"dead-lettered {report.dead_lettered}; {_match(channel, app)}"
        )
        app.configure(error_ratio=0, throttle_per_second=None, reject=[])
    # The sandboxes stop with the demo: stop pushing to them until a channel is pointed at
    # a live shop again.
    for channel, _ in channels:
        channel_update(channel=channel, actor="demo", push_enabled=False)
    return (
        f"{len(changed)} stock changes marked {dirty} listings dirty; channels left with push "
        f"disabled "
        f"(their sandboxes stop with the demo)"
    )


def _hold_push(channel: Channel) -> None:
    cache.set(PENDING_KEY.format(channel_id=channel.pk), 1, timeout=300)


def _adjust(product, warehouse, rng) -> None:
    delta = Decimal(rng.choice([-3, -2, -1, 2, 5, 8]))
    level = product.stock_levels.filter(warehouse=warehouse).first()
    if level is not None and level.available + delta < 0:
        delta = -delta
    services.stock_adjust(product=product, warehouse=warehouse, delta=delta, origin=ORIGIN)


def _match(channel: Channel, app) -> str:
    """Whether the sandbox holds every listing's desired quantity (dead-lettered aside)."""
    cls = adapter_class(channel.type)
    listings = list(channel.listings.all())
    settled = [listing for listing in listings if listing.status == ChannelListing.Status.OK]
    matching = sum(
        1
        for listing in settled
        if app.quantity(cls.keys_from_listing(listing)) == listing.desired_quantity
        and not listing.dirty
    )
    verdict = "yes" if matching == len(settled) else "NO"
    failed = len(listings) - len(settled)
    extra = f", {failed} dead-lettered" if failed else ""
    return f"sandbox at desired: {verdict} ({matching}/{len(settled)}{extra})"
