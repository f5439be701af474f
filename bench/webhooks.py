"""Benchmark webhook intake under gunicorn on PostgreSQL, and an order's way to the other shops.

    .venv/bin/python bench/webhooks.py [--clients 8] [--seconds 8] [--workers 3] [--orders 40]

Creates a throwaway database (`syncstore_bench_webhooks`), serves the app with gunicorn and the
Shopee, Lazada and TikTok Shop sandboxes on local ports, and measures:

  baseline  GET  /health/live                    (Django's full middleware, no DB)
  shopee    POST /webhooks/shopee/<id>/          (a new signed order push each request)
  tiktok    POST /webhooks/tiktok/<id>/          (the same, TikTok Shop's signature)

with N concurrent client processes, each sending one request at a time. A webhook's intake
is the signature check, the event's insert (committed before the answer) and the enqueue of
its processing on the Redis broker; nothing consumes the queue in these phases. The sandboxes
sign the notifications with their own code, as the marketplaces do.

Then, end to end with a real Celery worker: the Shopee sandbox places orders one after
another (each notified to the webhook URL); the worker fetches the order's detail, reserves
the stock and pushes the new quantity to the Lazada and TikTok Shop sandboxes. The time from
the notification's 2xx to both other shops showing the new quantity is reported (p50, p95).

Figures are printed and written as JSON under bench/results/. PostgreSQL and Redis come from
BENCH_DATABASE_ADMIN_URL / REDIS_URL (default 127.0.0.1).
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stock_api import (  # noqa: E402
    free_port,
    manage,
    percentile,
    phase_figures,
    start_gunicorn,
    timed_request,
)

PYTHON = sys.executable
DB_NAME = "syncstore_bench_webhooks"
PRODUCT_STOCK = 100000

SEED = """
import json
from decimal import Decimal
from channels_sync.models import Channel
from channels_sync.services.channels import channel_create
from channels_sync.services.listings import listings_upsert
from inventory import selectors, services
spec = json.loads(SPEC)
vendor = selectors.vendor_default()
warehouse = services.warehouse_create(vendor=vendor, code="MAIN", name="Main", is_default=True)
product = services.product_create(vendor=vendor, sku="BENCH-TEE", name="Bench T-shirt")
services.stock_set(product=product, warehouse=warehouse, quantity=Decimal(spec["stock"]),
                   origin=services.Origin(source="bench", actor="bench"))
ids = {}
for kind, shop in spec["shops"].items():
    channel = channel_create(vendor=vendor, name=f"bench {kind}", type=kind, base_url=shop["url"],
                             auth_base_url=shop["url"], credentials=shop["credentials"],
                             warehouses=["MAIN"], rate_limit_per_second=1000.0,
                             rate_limit_burst=1000, actor="bench")
    listings_upsert(channel=channel, rows=[{"sku": "BENCH-TEE", "keys": shop["keys"]}],
                    actor="bench")
    ids[kind] = channel.pk
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
print(json.dumps(ids))
"""

KEYS = {
    "shopee": {"item_id": "810001", "model_id": "910001"},
    "lazada": {"item_id": "820001", "sku_id": "920001", "seller_sku": "BENCH-TEE"},
    "tiktok": {"product_id": "830001", "sku_id": "930001"},
}


def bench_env(admin_url: str, redis_url: str, broker_url: str, public_url: str) -> dict:
    base = admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{base}/{DB_NAME}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url,
        "PUBLIC_BASE_URL": public_url,
        "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def prepare_database(admin_url: str, env: dict, spec: dict) -> dict[str, int]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    script = SEED.replace("SPEC", repr(json.dumps(spec)))
    out = manage(env, "shell", "-c", script, capture=True)
    return json.loads(out.strip().splitlines()[-1])


def drop_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def broker_flush(broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url).flushdb()


def _notifier(kind: str, webhook_url: str):
    """A sandbox of `kind` that signs notifications for `webhook_url` (nothing served)."""
    from channels_sync.sandbox import ShopeeSandbox, TikTokSandbox

    app = ShopeeSandbox() if kind == "shopee" else TikTokSandbox()
    app.configure(webhook_url=webhook_url)
    return app


def _order(app, n: int, seed: int):
    from channels_sync.sandbox.base import SandboxOrder, SandboxOrderLine

    now = time.time()
    status = "READY_TO_SHIP" if app.name == "shopee" else "AWAITING_SHIPMENT"
    keys = KEYS["shopee"] if app.name == "shopee" else KEYS["tiktok"]
    return SandboxOrder(
        order_id=f"B{seed:03d}{n:09d}",
        status=status,
        lines=[SandboxOrderLine(keys=keys, sku="BENCH-TEE", quantity=1, line_id=f"{n}")],
        created=now,
        updated=now,
        paid=now,
    )


def client(args: tuple) -> dict:
    """One client: send requests back to back until the deadline; return latencies (ms)."""
    phase, port, path, webhook_url, start_at, stop_at, seed = args
    app = _notifier(phase, webhook_url) if phase != "baseline" else None
    latencies: list[float] = []
    errors: dict[str, int] = {}
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        n += 1
        if app is None:
            method, body, headers = "GET", None, {}
        else:
            # Signing is the marketplace's work, not the intake's: keep it out of the timing.
            body, headers = app.notification(_order(app, n, seed), bad_signature=False)
            method = "POST"
        status, elapsed = timed_request(port, method, path, body, headers)
        if status == 200:
            latencies.append(elapsed)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"latencies": latencies, "errors": errors}


def run_phase(phase: str, port: int, path: str, webhook_url: str, options) -> dict:
    def window(seconds: float, seed_base: int) -> list[tuple]:
        start_at = time.time() + 0.3
        return [
            (phase, port, path, webhook_url, start_at, start_at + seconds, seed_base + i)
            for i in range(options.clients)
        ]

    with multiprocessing.Pool(options.clients) as pool:
        pool.map(client, window(options.warmup, 100))  # warm-up: sent, not counted
        results = pool.map(client, window(options.seconds, 0))
    return phase_figures(phase, results, options.seconds)


def start_worker(env: dict) -> subprocess.Popen:
    worker = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--queues",
            "default,push,webhooks,orders",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(4)  # the worker connects and declares its queues
    return worker


def _order_seen(shopee, others, *, timeout: float) -> float | None:
    """Place one Shopee order of one unit; the ms from its notification's 2xx until every
    other shop shows one unit less (None: not within `timeout` seconds)."""
    before = [app.quantity(keys) for app, keys in others]
    order = shopee.order_create(
        lines=[{"keys": KEYS["shopee"], "sku": "BENCH-TEE", "quantity": 1}],
        status="READY_TO_SHIP",
    )
    accepted = time.perf_counter()
    delivery = shopee.deliveries[-1]
    if delivery.http_status != 200:
        raise SystemExit(f"order {order.order_id}: webhook answered {delivery.http_status}")
    expected = [quantity - 1 for quantity in before]
    deadline = accepted + timeout
    while time.perf_counter() < deadline:
        if [app.quantity(keys) for app, keys in others] == expected:
            return (time.perf_counter() - accepted) * 1000
        time.sleep(0.005)
    return None


def end_to_end(shops: dict, options) -> dict:
    """Orders placed on the Shopee sandbox, one after another; time until the other shops
    show the new quantity."""
    shopee = shops["shopee"]["app"]
    others = [(shops[kind]["app"], KEYS[kind]) for kind in ("lazada", "tiktok")]
    latencies: list[float] = []
    misses = 0
    missed: list[int] = []
    # One order first, not timed: the worker's processes and connections warm up on it.
    _order_seen(shopee, others, timeout=60.0)
    for n in range(options.orders):
        elapsed = _order_seen(shopee, others, timeout=options.e2e_timeout)
        if elapsed is None:
            # Not seen in time: counted at the timeout, so a miss never flatters the figures.
            misses += 1
            missed.append(n)
            elapsed = options.e2e_timeout * 1000
        latencies.append(elapsed)
    return {
        "orders": options.orders,
        "misses": misses,
        "missed": missed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "max_ms": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0, help="Counted time per phase.")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes.")
    parser.add_argument("--orders", type=int, default=40, help="Orders timed end to end.")
    parser.add_argument("--e2e-timeout", type=float, default=15.0)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    options = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from channels_sync.sandbox import LazadaSandbox, ShopeeSandbox, TikTokSandbox
    from core.sandbox import SandboxServer

    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    broker_url = os.environ.get("BENCH_BROKER_URL", redis_url.rsplit("/", 1)[0] + "/12")
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    env = bench_env(admin_url, redis_url, broker_url, public_url)
    servers = {
        "shopee": SandboxServer(ShopeeSandbox()).start(),
        "lazada": SandboxServer(LazadaSandbox()).start(),
        "tiktok": SandboxServer(TikTokSandbox()).start(),
    }
    shops = {}
    for kind, server in servers.items():
        server.app.seed_listings([KEYS[kind]])
        shops[kind] = {
            "app": server.app,
            "url": server.url,
            "credentials": server.app.credentials(),
            "keys": KEYS[kind],
        }
    spec = {
        "stock": PRODUCT_STOCK,
        "shops": {
            k: {"url": v["url"], "credentials": v["credentials"], "keys": v["keys"]}
            for k, v in shops.items()
        },
    }
    print(f"preparing {DB_NAME}: one product, channels on the Shopee, Lazada, TikTok sandboxes")
    channel_ids = prepare_database(admin_url, env, spec)
    broker_flush(broker_url)
    server = start_gunicorn(env, port, options.workers, 1)
    print(
        f"gunicorn: {options.workers} sync workers on {os.cpu_count()} CPUs; {options.clients} "
        f"concurrent clients; {options.warmup:g} s warm-up + {options.seconds:g} s counted per "
        f"phase; log level {env['DJANGO_LOG_LEVEL']}",
        flush=True,
    )
    results = []
    worker = None
    try:
        for phase, path in (
            ("baseline", "/health/live"),
            ("shopee", f"/webhooks/shopee/{channel_ids['shopee']}/"),
            ("tiktok", f"/webhooks/tiktok/{channel_ids['tiktok']}/"),
        ):
            results.append(run_phase(phase, port, path, public_url + path, options))
            broker_flush(broker_url)  # the notified orders do not exist: nothing to process
        manage(
            env,
            "shell",
            "-c",
            "from webhooks.models import WebhookEvent; WebhookEvent.objects.all().delete()",
        )
        servers["shopee"].app.configure(
            webhook_url=f"{public_url}/webhooks/shopee/{channel_ids['shopee']}/"
        )
        for channel_id in channel_ids.values():
            manage(env, "push_stock", "--channel", str(channel_id), capture=True)
        # The seed's pushes were queued and then flushed with the broker: their "a push is
        # pending" marks would hold back the next enqueues until they lapse.
        manage(
            env,
            "shell",
            "-c",
            "from django.core.cache import cache; "
            "from channels_sync.services.dirty import PENDING_KEY; "
            "[cache.delete(PENDING_KEY.format(channel_id=i)) "
            f"for i in {list(channel_ids.values())}]",
        )
        worker = start_worker(env)
        e2e = end_to_end(shops, options)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
        for sandbox in servers.values():
            sandbox.stop()
    base = results[0]
    print()
    print(
        f"{'phase':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'req/s x base':>12}  errors"
    )
    for row in results:
        row["throughput_ratio"] = row["throughput_rps"] / base["throughput_rps"]
        print(
            f"{row['phase']:<10} {row['throughput_rps']:>8.0f} {row['p50_ms']:>8.1f} "
            f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {row['throughput_ratio']:>12.2f}  "
            f"{row['errors'] or '-'}"
        )
    print(
        f"\nend to end ({e2e['orders']} Shopee orders, one at a time, real worker): "
        + f"p50 {e2e['p50_ms']:.0f} ms, p95 {e2e['p95_ms']:.0f} ms, max {e2e['max_ms']:.0f} ms"
        + f"; {e2e['misses']} not seen within {options.e2e_timeout:g} s"
    )
    ledger = manage(env, "check_ledger", capture=True).strip()
    print(f"ledger after the run: {ledger}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"webhooks-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "options": vars(options),
                "cpus": os.cpu_count(),
                "results": results,
                "end_to_end": e2e,
                "ledger": ledger,
            },
            indent=2,
        )
    )
    print(f"results: {path.relative_to(ROOT)}")
    if not options.keep:
        drop_database(admin_url)


if __name__ == "__main__":
    main()
