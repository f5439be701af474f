"""Benchmark the webhook intake under gunicorn on PostgreSQL, against a bare Django endpoint.

    .venv/bin/python bench/webhooks.py [--clients 8] [--seconds 10] [--workers 3]

Creates a throwaway database (`syncstore_bench_webhooks`) with one Lazada channel, starts
gunicorn with a real Redis broker (tasks are queued, not consumed: the intake's cost only),
then drives two phases with N concurrent client processes, one request at a time each:

  baseline   GET  /health/live                    (Django's full middleware, no DB)
  intake     POST /webhooks/lazada/<id>/          (signature check, one INSERT, enqueue)

Every intake request is a new notification (a new event key), signed as Lazada signs
(hex HMAC-SHA256 of app_key + body with the app secret). Prints throughput and latency
percentiles and their ratio to the baseline (the aim: >= 500 req/s, p99 <= 50 ms on 2 cores,
>= 40% of the baseline's throughput) and writes them as JSON under bench/results/.
PostgreSQL, Redis and the broker come from BENCH_DATABASE_ADMIN_URL / REDIS_URL /
BENCH_BROKER_URL (default 127.0.0.1).
"""

import argparse
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from stock_api import free_port, percentile, start_gunicorn

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_NAME = "syncstore_bench_webhooks"
APP_KEY = "bench-app-key"
APP_SECRET = "bench-app-secret"

SEED = f"""
from channels_sync.models import Channel
from inventory import selectors
channel = Channel.objects.create(
    vendor=selectors.vendor_default(), name="bench", type="lazada",
    base_url="http://127.0.0.1:9/rest",
    credentials={{"app_key": "{APP_KEY}", "app_secret": "{APP_SECRET}",
                 "access_token": "x", "refresh_token": "y"}},
)
print(channel.pk)
"""


def bench_env(admin_url: str, redis_url: str, broker_url: str) -> dict[str, str]:
    base = admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{base}/{DB_NAME}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": broker_url,
        "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def manage(env: dict, *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=capture,
        text=True,
    )  # fmt: skip
    return result.stdout if capture else ""


def prepare_database(admin_url: str, env: dict) -> int:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    return int(manage(env, "shell", "-c", SEED, capture=True).strip().splitlines()[-1])


def drop_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


def notification(seed: int, n: int) -> bytes:
    order_id = f"{seed:04d}{n:011d}"
    return json.dumps(
        {
            "seller_id": "1000",
            "message_type": 0,
            "data": {
                "order_status": "pending",
                "trade_order_id": order_id,
                "trade_order_line_id": order_id + "1",
                "status_update_time": 1_790_000_000 + n,
            },
            "timestamp": 1_790_000_000_000 + n,
            "site": "lazada_id",
        },
        separators=(",", ":"),
    ).encode()


def client(args: tuple) -> dict:
    """One client: send requests back to back until the deadline; return latencies (ms)."""
    phase, port, channel_id, start_at, stop_at, seed = args
    latencies: list[float] = []
    errors: dict[str, int] = {}
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        n += 1
        if phase == "baseline":
            method, path, body, headers = "GET", "/health/live", None, {}
        else:
            method, path = "POST", f"/webhooks/lazada/{channel_id}/"
            body = notification(seed, n)
            signature = hmac.new(APP_SECRET.encode(), APP_KEY.encode() + body, hashlib.sha256)
            headers = {"Authorization": signature.hexdigest(), "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            status = response.status
        except OSError as exc:
            status = type(exc).__name__
        elapsed = (time.perf_counter() - started) * 1000
        if status == 200:
            latencies.append(elapsed)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"latencies": latencies, "errors": errors}


def run_phase(phase: str, port: int, channel_id: int, options: argparse.Namespace) -> dict:
    def window(seconds: float, seed_base: int) -> list[tuple]:
        start_at = time.time() + 0.3
        return [
            (phase, port, channel_id, start_at, start_at + seconds, seed_base + i)
            for i in range(options.clients)
        ]

    with multiprocessing.Pool(options.clients) as pool:
        pool.map(client, window(options.warmup, 1000))  # warm-up: sent, not counted
        results = pool.map(client, window(options.seconds, 0))
    latencies = [ms for result in results for ms in result["latencies"]]
    errors: dict[str, int] = {}
    for result in results:
        for status, count in result["errors"].items():
            errors[status] = errors.get(status, 0) + count
    return {
        "phase": phase,
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": len(latencies) / options.seconds,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
    }


def purge_queue(broker_url: str) -> None:
    import redis

    redis.Redis.from_url(broker_url).delete("webhooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="Counted time per phase.")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes.")
    parser.add_argument("--threads", type=int, default=1, help="Threads per worker.")
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    options = parser.parse_args()

    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
    broker_url = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12")
    env = bench_env(admin_url, redis_url, broker_url)
    print(f"preparing {DB_NAME} ...", flush=True)
    channel_id = prepare_database(admin_url, env)
    port = free_port()
    server = start_gunicorn(env, port, options.workers, options.threads)
    cpus = os.cpu_count()
    print(
        f"gunicorn: {options.workers} workers x {options.threads} threads on {cpus} CPUs; "
        f"{options.clients} concurrent clients; {options.warmup:g} s warm-up + "
        f"{options.seconds:g} s counted per phase",
        flush=True,
    )
    try:
        results = [run_phase(phase, port, channel_id, options) for phase in ("baseline", "intake")]
    finally:
        server.terminate()
        server.wait(timeout=30)
        purge_queue(broker_url)
    base = results[0]
    print()
    print(
        f"{'phase':<10} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'req/s x base':>12}  errors"
    )
    for row in results:
        row["throughput_ratio"] = row["throughput_rps"] / base["throughput_rps"]
        print(
            f"{row['phase']:<10} {row['throughput_rps']:>8.0f} {row['p50_ms']:>8.1f} "
            f"{row['p90_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
            f"{row['throughput_ratio']:>12.2f}  {row['errors'] or '-'}"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"webhooks-{stamp}.json"
    path.write_text(json.dumps({"options": vars(options), "cpus": cpus, "results": results}))
    print(f"results: {path.relative_to(ROOT)}")
    if not options.keep:
        drop_database(admin_url)


if __name__ == "__main__":
    main()
