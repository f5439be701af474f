"""Benchmark the channel push: 10 channels x 10,000 listings after every product's stock changed.

    .venv/bin/python bench/push.py [--listings 10000] [--channels 10] [--naive-sample 1000]

Creates a throwaway PostgreSQL database (`syncstore_bench_push`), serves the nine channel
sandboxes in their own process (`manage.py sandbox serve`), and creates the products, their
stock, and the channels (Shopee, Lazada, TikTok Shop, Tokopedia & Shop, Shopify, Amazon,
eBay, Square, custom REST shop in turn) with one listing per product each, each type in its
own batch shape (`BATCH_SIZES`: Amazon's batches go as feeds, eBay sends one SKU a call, the
REST shop its batch mode). Rate limits are set high (the channels' and the sandboxes' own:
Shopify's cost bucket, Amazon's operation quotas), so what is measured is our own overhead
plus the sandboxes' answers. Then, in this process:

  first push   every listing is new: plan and push all of them
  change       every product's stock changes (one set-based sync, which marks every
               listing dirty in its transaction), then every channel is pushed
  planning     the allocation alone over every listing (listings per second)
  again        a push with no change: must send nothing
  floor        the same calls sent through the adapters with the quantities known in
               advance: no database, no planning, no records (the least work possible)
  naive        a per-listing loop (read the listing and its stock with the ORM, one call per
               listing, save the listing) on a `--naive-sample` sample, extrapolated

It prints the figures and the ratio of the push to the floor measured in the same run, and
writes them as JSON under bench/results/. PostgreSQL comes from BENCH_DATABASE_ADMIN_URL
(default 127.0.0.1).
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
DB_NAME = "syncstore_bench_push"
TYPES = ("shopee", "lazada", "tiktok", "tokopedia", "shopify", "amazon", "ebay", "square", "rest")
# Listings sharing one marketplace item (Shopee models of an item, TikTok SKUs of a product).
PER_ITEM = {"shopee": 50, "lazada": 1, "tiktok": 100, "tokopedia": 100}
# Listings per call: each marketplace's batch shape. Amazon's are past AMAZON_FEED_THRESHOLD,
# so each is one JSON_LISTINGS_FEED; eBay takes one SKU a call whatever the size.
BATCH_SIZES = {
    "shopee": 50,
    "lazada": 50,
    "tiktok": 100,
    "tokopedia": 100,
    "shopify": 250,
    "amazon": 5000,
    "ebay": 25,  # offers of one SKU: one SKU a call
    "square": 100,
    "rest": 100,
}
# Each sandbox's own limits, lifted (the shared faults are off by default).
UNLIMITED = 1_000_000
SANDBOX_OPTIONS = {
    "shopify": {"cost_maximum": UNLIMITED, "cost_restore_rate": UNLIMITED},
    "amazon": {
        "rate_limits": {
            operation: [UNLIMITED, UNLIMITED]
            for operation in (
                "patchListingsItem",
                "getListingsItem",
                "createFeedDocument",
                "createFeed",
                "getFeed",
                "getFeedDocument",
            )
        }
    },
    "ebay": {"revision_limit": UNLIMITED},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def control(url: str, action: str, payload: dict | None = None) -> object:
    request = urllib.request.Request(
        f"{url}/_sandbox/{action}",
        data=json.dumps(payload or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def start_sandboxes(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [PYTHON, "manage.py", "sandbox", "serve", "--only", ",".join(TYPES), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    for offset in range(len(TYPES)):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port + offset), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    server.kill()
                    raise SystemExit("the sandboxes did not start") from None
                time.sleep(0.2)
    return server


def keys_for(kind: str, channel_no: int, n: int) -> dict:
    base = channel_no * 10_000_000
    item, variant = base + n // PER_ITEM.get(kind, 1), base + 5_000_000 + n
    if kind == "shopify":
        return {"inventory_item_id": str(variant), "location_id": str(60_000_000 + channel_no)}
    if kind == "amazon":
        return {"seller_sku": f"S{variant}"}
    if kind == "ebay":
        return {"sku": f"S{variant}", "offer_id": str(variant)}
    if kind == "square":
        return {"catalog_object_id": f"SQ{variant}", "location_id": "LSANDBOXMAIN01"}
    if kind == "rest":
        return {"sku": f"S{variant}"}
    if kind == "shopee":
        return {"item_id": str(item), "model_id": str(variant)}
    if kind == "lazada":
        return {"item_id": str(item), "sku_id": str(variant), "seller_sku": f"S{variant}"}
    return {"product_id": str(item), "sku_id": str(variant)}


def hold_pending(channel_ids) -> None:
    """Stand in for an already queued push: the sync's on-commit enqueue is then coalesced
    into it, and the bench runs the push itself (eager mode would otherwise run it inline)."""
    from django.core.cache import cache

    from channels_sync.services.dirty import PENDING_KEY

    for channel_id in channel_ids:
        cache.set(PENDING_KEY.format(channel_id=channel_id), 1, timeout=600)


def push_all(channels) -> tuple[float, dict]:
    """Push every channel; the seconds, the summed report, and per type its seconds and calls
    (under `by_type`)."""
    from channels_sync.services.push import PushReport, channel_push

    total = PushReport(channel_id=0)
    by_type: dict[str, dict] = {}
    started = time.perf_counter()
    for channel in channels:
        channel_started = time.perf_counter()
        report = channel_push(channel_id=channel.pk)
        if report.stopped:
            raise SystemExit(f"push of {channel.name} stopped: {report.stopped} {report.errors}")
        if report.failed or report.dead_lettered:
            raise SystemExit(f"push of {channel.name} failed: {report.errors[:3]}")
        total.add(report)
        kind = by_type.setdefault(channel.type, {"seconds": 0.0, "calls": 0, "pushed": 0})
        kind["seconds"] += time.perf_counter() - channel_started
        kind["calls"] += report.calls
        kind["pushed"] += report.pushed
    return time.perf_counter() - started, {**total.as_dict(), "by_type": by_type}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listings", type=int, default=10_000, help="Listings per channel.")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--naive-sample", type=int, default=1_000)
    options = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": f"{admin_url.rsplit('/', 1)[0]}/{DB_NAME}",
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
            "SLACK_WEBHOOK_URL": "",
            "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        }
    )
    port = free_port()
    sandboxes = start_sandboxes(dict(os.environ), port)
    urls = {kind: f"http://127.0.0.1:{port + offset}" for offset, kind in enumerate(TYPES)}
    try:
        run(options, urls)
    finally:
        sandboxes.terminate()
        sandboxes.wait(timeout=10)


def run(options: argparse.Namespace, urls: dict[str, str]) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from channels_sync.adapters import StockUpdate
    from channels_sync.models import Channel, ChannelListing
    from channels_sync.sandbox.rest_options import BATCH
    from channels_sync.selectors import listings_to_push, plan, pools
    from channels_sync.services.channels import options_clean
    from channels_sync.services.tokens import channel_adapter
    from inventory import selectors as inventory_selectors
    from inventory import services
    from inventory.models import Product
    from inventory.services.bulk import LevelTarget, stock_levels_sync

    call_command("migrate", "--noinput", "--verbosity", "0")
    rng = random.Random(7)
    count = options.listings
    origin = services.Origin(source="bench", actor="bench")
    started = time.perf_counter()
    vendor = inventory_selectors.vendor_default()
    warehouse = services.warehouse_create(vendor=vendor, code="MAIN", name="Main", is_default=True)
    Product.objects.bulk_create(
        Product(vendor=vendor, sku=f"PUSH-{n:06d}", name=f"Bench item {n}") for n in range(count)
    )
    products = list(Product.objects.filter(vendor=vendor).order_by("pk"))
    stock_levels_sync(
        targets=[LevelTarget(p.pk, warehouse.pk, Decimal(rng.randint(0, 500))) for p in products],
        origin=origin,
    )
    channels = []
    for number in range(options.channels):
        kind = TYPES[number % len(TYPES)]
        url = urls[kind]
        channel = Channel.objects.create(
            vendor=vendor,
            name=f"{kind} {number}",
            type=kind,
            base_url=url,
            auth_base_url=url,
            credentials=control(url, "credentials"),
            rate_limit_per_second=100_000,
            rate_limit_burst=100_000,
            batch_size=BATCH_SIZES[kind],
            options=options_clean(kind, BATCH if kind == "rest" else {}),
        )
        channel.warehouses.set([warehouse])
        keys = [keys_for(kind, number, n) for n in range(count)]
        control(url, "configure", {"listings": keys, **SANDBOX_OPTIONS.get(kind, {})})
        columns = channel_adapter(channel).keys_to_columns
        ChannelListing.objects.bulk_create(
            (
                ChannelListing(channel=channel, product=product, dirty=True, **columns(key))
                for product, key in zip(products, keys, strict=True)
            ),
            batch_size=5000,
        )
        channels.append(channel)
    total = count * len(channels)
    print(
        f"seeded {count:,} products, {len(channels)} channels, {total:,} listings "
        f"in {time.perf_counter() - started:.1f} s"
    )
    results: dict = {
        "listings": total,
        "channels": len(channels),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "phases": {},
    }

    seconds, report = push_all(channels)
    results["phases"]["first push"] = {"seconds": seconds, **report}

    # Every product's stock changes; the sync marks all listings dirty in its transaction.
    hold_pending([c.pk for c in channels])
    targets = [LevelTarget(p.pk, warehouse.pk, Decimal(rng.randint(501, 1000))) for p in products]
    started = time.perf_counter()
    with transaction.atomic():
        stock_levels_sync(targets=targets, origin=origin)
    sync_seconds = time.perf_counter() - started
    dirty = ChannelListing.objects.filter(dirty=True).count()
    seconds, report = push_all(channels)
    results["phases"]["change"] = {
        "seconds": seconds,
        "sync_and_mark_seconds": sync_seconds,
        "marked": dirty,
        **report,
    }

    started = time.perf_counter()
    planned = 0
    for channel in channels:
        after = 0
        while rows := listings_to_push(channel, include_clean=True, after_id=after, limit=5000):
            planned += len(plan(channel, rows))
            after = rows[-1]["id"]
    planning = time.perf_counter() - started
    results["phases"]["planning"] = {
        "seconds": planning,
        "listings": planned,
        "per_second": planned / planning,
    }

    seconds, report = push_all(channels)
    results["phases"]["again"] = {"seconds": seconds, **report}
    if report["calls"]:
        raise SystemExit(f"a push with no change sent {report['calls']} calls")

    # The floor: the same calls with the quantities known in advance.
    quantities = {p.pk: q.on_hand for p, q in zip(products, targets, strict=True)}
    floor_calls = 0
    floor_time = 0.0
    floor_by_type: dict[str, dict] = {}
    for channel in channels:
        adapter = channel_adapter(channel)
        # The quantity the channel shows is the one last pushed: the expectation the push
        # sends (compare-and-set channels need it; without it Shopify reads every level).
        updates = [
            StockUpdate(
                row["id"],
                adapter.keys_from_listing(row),
                int(quantities[row["product_id"]]),
                expected=row["last_pushed_quantity"],
            )
            for row in ChannelListing.objects.filter(channel=channel)
            .order_by("id")
            .values("id", "product_id", "last_pushed_quantity", *adapter.keys_to_columns({}))
        ]
        started = time.perf_counter()
        calls = 0
        for batch in adapter.batches(updates, channel.batch_size):
            # A key per call, as the push sends one (Shopify and Square take it, the REST shop
            # sends it as Idempotency-Key).
            result = adapter.push_stock(batch, idempotency_key=str(uuid.uuid4()))
            calls += 1
            if result.outcome != "ok":
                raise SystemExit(f"floor call failed: {result}")
        elapsed = time.perf_counter() - started
        floor_calls += calls
        floor_time += elapsed
        kind = floor_by_type.setdefault(channel.type, {"seconds": 0.0, "calls": 0})
        kind["seconds"] += elapsed
        kind["calls"] += calls
    results["phases"]["floor"] = {
        "seconds": floor_time,
        "calls": floor_calls,
        "by_type": floor_by_type,
    }

    # The naive loop: one listing at a time through the ORM, one call each.
    sample = list(
        ChannelListing.objects.select_related("channel").order_by("?")[: options.naive_sample]
    )
    adapters = {c.pk: channel_adapter(c) for c in channels}
    started = time.perf_counter()
    with transaction.atomic():
        for listing in sample:
            pool = pools([listing.product_id], [warehouse.pk]).get(listing.product_id, 0)
            quantity = max(0, int(pool))
            adapter = adapters[listing.channel_id]
            update = StockUpdate(listing.pk, adapter.keys_from_listing(listing), quantity)
            adapter.push_stock([update])
            listing.last_pushed_quantity = quantity
            listing.save()
        transaction.set_rollback(True)
    naive = (time.perf_counter() - started) / len(sample) * total
    results["phases"]["naive (extrapolated)"] = {"seconds": naive, "sample": len(sample)}
    connection.close()
    report_results(results)


def report_results(results: dict) -> None:
    phases = results["phases"]
    change, floor = phases["change"], phases["floor"]
    total = results["listings"]
    print()
    print(f"{'phase':<22} {'seconds':>8} {'listings/s':>11} {'calls':>7}  notes")
    for name in ("first push", "change", "again"):
        phase = phases[name]
        rate = phase["planned"] / phase["seconds"] if phase["seconds"] else 0
        notes = f"pushed {phase['pushed']:,}, unchanged {phase['unchanged']:,}"
        print(f"{name:<22} {phase['seconds']:>8.2f} {rate:>11,.0f} {phase['calls']:>7,}  {notes}")
    planning = phases["planning"]
    print(f"{'planning only':<22} {planning['seconds']:>8.2f} {planning['per_second']:>11,.0f}")
    print(f"{'floor (adapters only)':<22} {floor['seconds']:>8.2f} {'':>11} {floor['calls']:>7,}")
    naive = phases["naive (extrapolated)"]
    print(
        f"{'naive (extrapolated)':<22} {naive['seconds']:>8.1f} {total / naive['seconds']:>11,.0f}"
    )
    print()
    print(
        f"stock sync of every product + dirty marks: {change['sync_and_mark_seconds']:.2f} s "
        f"({change['marked']:,} listings marked)"
    )
    print(
        f"push after the change: {change['seconds']:.2f} s for {total:,} listings "
        f"(aim <= 30 s); planning {planning['per_second']:,.0f} listings/s (aim >= 50,000)"
    )
    print(
        f"ratio push / floor: {change['seconds'] / floor['seconds']:.2f}x; "
        f"naive / push: {naive['seconds'] / change['seconds']:.1f}x"
    )
    print()
    print(f"{'type':<10} {'push s':>8} {'calls':>7} {'listings/s':>11} {'floor s':>8} {'ratio':>6}")
    for kind, pushed in change["by_type"].items():
        floored = floor["by_type"][kind]
        rate = pushed["pushed"] / pushed["seconds"] if pushed["seconds"] else 0
        ratio = pushed["seconds"] / floored["seconds"] if floored["seconds"] else 0
        print(
            f"{kind:<10} {pushed['seconds']:>8.2f} {pushed['calls']:>7,} {rate:>11,.0f} "
            f"{floored['seconds']:>8.2f} {ratio:>5.2f}x"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"push-{results['when'].replace(':', '')}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
