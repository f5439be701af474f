"""Benchmark the nightly ERP pull end to end, against the raw-SQL floor and a per-row ORM loop.

    .venv/bin/python bench/erp_pull.py [--skus 50000] [--changed 0.9] [--naive-sample 5000]

Creates a throwaway PostgreSQL database (`syncstore_bench_erp`), serves the ERP sandbox in
its own process (`manage.py sandbox serve --only erp`), creates the sandbox's SKUs as
products, and then measures, each in a fresh process (peak memory is that process's):

  first pull    `manage.py erp_pull`: every level is new (created, one movement each)
  pull          `manage.py erp_pull` after the ERP changed `--changed` of the quantities
  again         the same answer once more: nothing changes
  floor         the least work that could do it: the same HTTP GET, ijson parse, COPY into a
                temp table and one UPDATE (no validation, no ledger, rolled back)
  naive         a per-row ORM loop (get product, get level, save, write a movement) on a
                `--naive-sample` sample, extrapolated to all SKUs (rolled back)

It prints SKUs per second, seconds and peak memory per phase and the ratio of the pull to the
floor measured in the same run, writes them as JSON under bench/results/, and finishes with
`check_ledger`. PostgreSQL comes from BENCH_DATABASE_ADMIN_URL (default 127.0.0.1).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_NAME = "syncstore_bench_erp"
TOKEN = "bench-erp-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(admin_url: str, erp_url: str, archive: str) -> dict[str, str]:
    base = admin_url.rsplit("/", 1)[0]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{base}/{DB_NAME}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "SLACK_WEBHOOK_URL": "",
        "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "ERP_BASE_URL": erp_url,
        "ERP_API_TOKEN": TOKEN,
        "ERP_ARCHIVE_DIR": archive,
        "ERP_PULL_ALERT_CHANGES": str(10**9),
    }
    return env


def run_measured(env: dict, args: list[str]) -> tuple[float, float, str]:
    """Run a child process; return (seconds, peak RSS in MB, stdout)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr = child.stderr.read().decode() if child.stderr else ""
        out.seek(0)
        stdout = out.read()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}):\n{stdout}\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stdout


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def sandbox_configure(url: str, **options) -> None:
    request = urllib.request.Request(
        f"{url}/_sandbox/configure",
        data=json.dumps(options).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def start_sandbox(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [PYTHON, "manage.py", "sandbox", "serve", "--only", "erp", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the ERP sandbox did not start")


# Seed code (run by `manage.py shell -c`): SKUS products ERP-0000000... of the default vendor
# in one set-based statement, inside `with connection.cursor() as cursor:`.
PRODUCTS_INSERT = """
    cursor.execute(
        "INSERT INTO inventory_product (created_at, updated_at, vendor_id, sku, name, erp_id, "
        "barcode, variant_group, attributes, unit_code, vat_code, family, subfamily, "
        "manage_stock, allow_negative_stock, is_discontinued, content_hash) "
        "SELECT now(), now(), %s, 'ERP-' || lpad(i::text, 7, '0'), 'Bench item ' || i, '', '', "
        "'', '{}'::jsonb, '', '', '', '', true, false, false, '' "
        "FROM generate_series(0, %s - 1) AS i",
        [vendor.pk, SKUS],
    )
"""

SEED = (
    """
from django.db import connection
from inventory import selectors, services
vendor = selectors.vendor_default()
services.warehouse_create(vendor=vendor, code="MAIN", name="Main", is_default=True)
with connection.cursor() as cursor:"""
    + PRODUCTS_INSERT
    + """    cursor.execute("ANALYZE")
"""
)

FLOOR = """
import io, time, ijson, requests
from django.db import connection, transaction
started = time.perf_counter()
response = requests.get(URL + "/inventory", headers={"Authorization": "Bearer TOKEN"},
                        stream=True, timeout=600)
body = io.BytesIO()
for chunk in response.iter_content(1 << 20):
    body.write(chunk)
body.seek(0)
with transaction.atomic(), connection.cursor() as cursor:
    cursor.execute("CREATE TEMP TABLE floor (sku varchar(100), qty numeric(14, 3)) ON COMMIT DROP")
    with cursor.cursor.copy("COPY floor (sku, qty) FROM STDIN") as copy:
        for row in ijson.items(body, "item", use_float=False):
            copy.write_row((row["sku"], row["qty"]))
    cursor.execute("ANALYZE floor")
    cursor.execute(
        "UPDATE inventory_stocklevel AS s SET on_hand = f.qty FROM floor f "
        "JOIN inventory_product p ON p.sku = f.sku WHERE s.product_id = p.id "
        "AND s.on_hand <> f.qty"
    )
    changed = cursor.rowcount
    transaction.set_rollback(True)
print(changed, round(time.perf_counter() - started, 3))
"""

NAIVE = """
import json, time, urllib.request
from decimal import Decimal
from django.db import transaction
from inventory.models import Product, StockLevel, StockMovement
request = urllib.request.Request(URL + "/inventory", headers={"Authorization": "Bearer TOKEN"})
rows = json.loads(urllib.request.urlopen(request).read(), parse_float=Decimal)[:SAMPLE]
started = time.perf_counter()
with transaction.atomic():
    for row in rows:
        product = Product.objects.get(sku=row["sku"])
        level = StockLevel.objects.get(product=product, warehouse__code="MAIN")
        before = level.on_hand
        level.on_hand = Decimal(row["qty"]) + 1
        level.save()
        StockMovement.objects.create(
            level=level, kind="erp_sync", on_hand_delta=level.on_hand - before,
            on_hand_after=level.on_hand, reserved_after=level.reserved, source="bench",
            actor="bench")
    transaction.set_rollback(True)
print(len(rows), round(time.perf_counter() - started, 3))
"""


def last_run(admin_url: str) -> dict:
    import psycopg

    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{DB_NAME}") as conn:
        row = conn.execute(
            "SELECT status, skus_processed, items_changed, duration_ms, api_latency_ms, "
            "details FROM erp_mapping_syncrun ORDER BY id DESC LIMIT 1"
        ).fetchone()
    status, skus, changed, duration_ms, latency_ms, details = row
    return {
        "status": status,
        "skus": skus,
        "changed": changed,
        "duration_ms": duration_ms,
        "latency_ms": latency_ms,
        "download_ms": details.get("download_ms"),
        "apply_ms": details.get("apply_ms"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--changed", type=float, default=0.9, help="Share changed per pull.")
    parser.add_argument("--naive-sample", type=int, default=5_000)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    options = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    import psycopg

    port = free_port()
    erp_url = f"http://127.0.0.1:{port}"
    archive = tempfile.mkdtemp(prefix="syncstore-bench-archive-")
    env = bench_env(admin_url, erp_url, archive)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    seed_started = time.perf_counter()
    manage(env, "shell", "-c", SEED.replace("SKUS", str(options.skus)))
    print(f"seeded {options.skus:,} products in {time.perf_counter() - seed_started:.1f} s")

    sandbox = start_sandbox(env, port)
    results: dict = {
        "skus": options.skus,
        "changed_ratio": options.changed,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "phases": {},
    }
    try:
        sandbox_configure(
            erp_url, token=TOKEN, skus=options.skus, generation=0, changed_ratio=options.changed
        )
        pull = [PYTHON, "manage.py", "erp_pull"]
        for phase, generation in (("first pull", 0), ("pull", 1), ("again", 1)):
            sandbox_configure(erp_url, generation=generation)
            seconds, peak_mb, _ = run_measured(env, pull)
            run = last_run(admin_url)
            if run["status"] != "completed":
                raise SystemExit(f"{phase}: the run {run['status']}")
            results["phases"][phase] = {"seconds": round(seconds, 2), "peak_mb": peak_mb, **run}

        sandbox_configure(erp_url, generation=2)
        floor_script = FLOOR.replace("URL", repr(erp_url)).replace("TOKEN", TOKEN)
        seconds, peak_mb, out = run_measured(
            env, [PYTHON, "manage.py", "shell", "-c", floor_script]
        )
        changed, work = out.split()[-2:]
        results["phases"]["floor"] = {
            "seconds": round(seconds, 2),
            "work_seconds": float(work),
            "peak_mb": peak_mb,
            "changed": int(changed),
        }

        if options.naive_sample:
            naive_script = (
                NAIVE.replace("URL", repr(erp_url))
                .replace("TOKEN", TOKEN)
                .replace("SAMPLE", str(min(options.naive_sample, options.skus)))
            )
            _, peak_mb, out = run_measured(env, [PYTHON, "manage.py", "shell", "-c", naive_script])
            rows, work = out.split()[-2:]
            rate = int(rows) / float(work)
            results["phases"]["naive"] = {
                "sample": int(rows),
                "work_seconds": float(work),
                "rows_per_second": round(rate),
                "extrapolated_seconds": round(options.skus / rate, 1),
            }
        ledger = manage(env, "check_ledger")
    finally:
        sandbox.terminate()
        sandbox.wait(10)
        if not options.keep:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    report(results, ledger)


def report(results: dict, ledger: str) -> None:
    phases = results["phases"]
    skus = results["skus"]
    floor = phases["floor"]
    print(f"\nERP pull of {skus:,} SKUs over HTTP into PostgreSQL ({results['when']})\n")
    print(f"{'phase':<12} {'seconds':>8} {'SKUs/s':>10} {'peak MB':>8} {'changed':>9}  notes")
    for name in ("first pull", "pull", "again"):
        p = phases[name]
        notes = (
            f"in-run: download {p['download_ms']} ms, apply {p['apply_ms']} ms, "
            f"run {p['duration_ms']} ms"
        )
        print(
            f"{name:<12} {p['seconds']:>8.2f} {skus / p['seconds']:>10,.0f} "
            f"{p['peak_mb']:>8.0f} {p['changed']:>9,}  {notes}"
        )
    print(
        f"{'floor':<12} {floor['seconds']:>8.2f} {skus / floor['seconds']:>10,.0f} "
        f"{floor['peak_mb']:>8.0f} {floor['changed']:>9,}  GET + ijson + COPY + one UPDATE "
        f"({floor['work_seconds']:.2f} s of work)"
    )
    naive = phases.get("naive")
    if naive:
        print(
            f"{'naive ORM':<12} {naive['extrapolated_seconds']:>8.1f} "
            f"{naive['rows_per_second']:>10,}          -          -  per-row loop, "
            f"{naive['sample']:,}-row sample extrapolated"
        )
    pull = phases["pull"]
    ratio = pull["seconds"] / floor["seconds"]
    work_ratio = pull["duration_ms"] / 1000 / floor["work_seconds"]
    print(
        f"\npull / floor: {ratio:.2f}x wall clock (process start included), "
        f"{work_ratio:.2f}x in-run work"
    )
    if naive:
        print(f"naive / pull: {naive['extrapolated_seconds'] / pull['seconds']:.0f}x slower")
    print(f"ledger: {ledger.strip().splitlines()[-1] if ledger.strip() else 'ok'}")
    results["pull_over_floor"] = round(ratio, 2)
    results["pull_over_floor_work"] = round(work_ratio, 2)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"erp_pull_{skus}_{datetime.now(UTC):%Y%m%d_%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"figures written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
