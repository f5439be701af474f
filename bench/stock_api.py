"""Benchmark the stock API under gunicorn on PostgreSQL, against a bare Django endpoint.

    .venv/bin/python bench/stock_api.py [--clients 8] [--seconds 10] [--workers 5]

Creates a throwaway database (`syncstore_bench`), seeds products with stock, starts
gunicorn, then drives three phases with N concurrent client processes, each sending one
request at a time:

  baseline   GET  /health/live                  (Django's full middleware, no DRF, no DB)
  read       GET  /api/v1/stock-levels/{sku}/   (API key, throttle, one product's levels)
  mutation   POST /api/v1/stock-mutations/      (Idempotency-Key, row lock, ledger write)

It prints throughput and latency percentiles per phase and their ratio to the baseline,
writes them as JSON under bench/results/, and finishes with `check_ledger` on the bench
database. PostgreSQL and Redis come from BENCH_DATABASE_ADMIN_URL / REDIS_URL (default
127.0.0.1).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_NAME = "syncstore_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(admin_url: str, redis_url: str) -> dict[str, str]:
    base = admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{base}/{DB_NAME}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "",  # tasks inline: nothing in this path enqueues
        "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def manage(env: dict, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=capture,
        text=True,
    )
    return result.stdout if capture else ""


SEED = """
from decimal import Decimal
from django.db import transaction
from core.services import api_key_create
from inventory import selectors, services
vendor = selectors.vendor_default()
warehouse = services.warehouse_create(vendor=vendor, code="MAIN", name="Main", is_default=True)
rows = [{"sku": f"BENCH-{i:05d}", "name": f"Bench product {i}"} for i in range(PRODUCTS)]
services.products_bulk_create(vendor=vendor, rows=rows)
origin = services.Origin(source="bench", actor="bench")
with transaction.atomic():
    for product in vendor.products.all():
        services.stock_set(product=product, warehouse=warehouse, quantity=Decimal(1000000),
                           origin=origin)
key = api_key_create(name="bench", scopes=["read", "write"], rate_limit_per_minute=10**9).key
# Fresh tables have no planner statistics; production ones are analysed by autovacuum.
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
print(key)
"""


def prepare_database(admin_url: str, env: dict, products: int) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    out = manage(env, "shell", "-c", SEED.replace("PRODUCTS", str(products)), capture=True)
    return out.strip().splitlines()[-1]


def drop_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def start_gunicorn(env: dict, port: int, workers: int, threads: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--threads",
            str(threads),
            "--backlog",
            "512",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/live")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("gunicorn did not start")


def timed_request(
    port: int, method: str, path: str, body: str | bytes | None, headers: dict
) -> tuple[int | str, float]:
    """Send one request on a new connection; return (status or error name, ms taken)."""
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        status: int | str = response.status
    except OSError as exc:
        status = type(exc).__name__
    return status, (time.perf_counter() - started) * 1000


def client(args: tuple) -> dict:
    """One client: send requests back to back until the deadline; return latencies (ms)."""
    phase, port, key, products, start_at, stop_at, seed = args
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        sku = f"BENCH-{rng.randrange(products):05d}"
        headers = {"X-API-Key": key}
        body = None
        if phase == "baseline":
            method, path = "GET", "/health/live"
        elif phase == "read":
            method, path = "GET", f"/api/v1/stock-levels/{sku}/"
        else:
            method, path = "POST", "/api/v1/stock-mutations/"
            body = json.dumps(
                {
                    "sku": sku,
                    "warehouse": "MAIN",
                    "type": "adjust",
                    "quantity": rng.choice(["1", "-1"]),
                }
            )
            headers |= {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        status, elapsed = timed_request(port, method, path, body, headers)
        if status in (200, 201):
            latencies.append(elapsed)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"latencies": latencies, "errors": errors}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def run_phase(phase: str, port: int, key: str, options: argparse.Namespace) -> dict:
    def window(seconds: float, seed_base: int) -> list[tuple]:
        start_at = time.time() + 0.3  # every client starts together
        return [
            (phase, port, key, options.products, start_at, start_at + seconds, seed_base + i)
            for i in range(options.clients)
        ]

    with multiprocessing.Pool(options.clients) as pool:
        pool.map(client, window(options.warmup, 1000))  # warm-up: sent, not counted
        results = pool.map(client, window(options.seconds, 0))
    return phase_figures(phase, results, options.seconds)


def phase_figures(phase: str, results: list[dict], seconds: float) -> dict:
    """Throughput and latency percentiles of a phase from its clients' results."""
    latencies = [ms for result in results for ms in result["latencies"]]
    errors: dict[str, int] = {}
    for result in results:
        for status, count in result["errors"].items():
            errors[status] = errors.get(status, 0) + count
    if not latencies:
        raise SystemExit(f"phase {phase}: no request succeeded ({errors})")
    return {
        "phase": phase,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="Counted time per phase.")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes.")
    parser.add_argument(
        "--threads", type=int, default=1, help="Threads per worker (>1: gthread workers)."
    )
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    options = parser.parse_args()

    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    env = bench_env(admin_url, redis_url)
    print(f"preparing {DB_NAME}: {options.products} products with stock ...", flush=True)
    key = prepare_database(admin_url, env, options.products)
    port = free_port()
    server = start_gunicorn(env, port, options.workers, options.threads)
    cpus = os.cpu_count()
    print(
        f"gunicorn: {options.workers} workers x {options.threads} threads on {cpus} CPUs; "
        f"{options.clients} concurrent "
        f"clients; {options.warmup:g} s warm-up + {options.seconds:g} s counted per phase; "
        f"log level {env['DJANGO_LOG_LEVEL']}",
        flush=True,
    )
    try:
        results = [
            run_phase(phase, port, key, options) for phase in ("baseline", "read", "mutation")
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    base = results[0]
    print()
    print(
        f"{'phase':<10} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'p50 x base':>10} {'req/s x base':>12}  errors"
    )
    for row in results:
        row["p50_ratio"] = row["p50_ms"] / base["p50_ms"]
        row["throughput_ratio"] = row["throughput_rps"] / base["throughput_rps"]
        print(
            f"{row['phase']:<10} {row['throughput_rps']:>8.0f} {row['p50_ms']:>8.1f} "
            f"{row['p90_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
            f"{row['p50_ratio']:>10.2f} {row['throughput_ratio']:>12.2f}  {row['errors'] or '-'}"
        )
    ledger = manage(env, "check_ledger", capture=True).strip()
    print(f"\nledger after the run: {ledger}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"stock_api-{stamp}.json"
    path.write_text(
        json.dumps(
            {"options": vars(options), "cpus": cpus, "results": results, "ledger": ledger},
            indent=2,
        )
    )
    print(f"results: {path.relative_to(ROOT)}")
    if not options.keep:
        drop_database(admin_url)


if __name__ == "__main__":
    main()
