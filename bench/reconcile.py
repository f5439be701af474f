"""Benchmark the ERP reconciliation: range checksums and a binary search vs a full fetch.

    .venv/bin/python bench/reconcile.py [--skus 100000] [--drift 10]

Creates a throwaway PostgreSQL database (`syncstore_bench_reconcile`), serves the ERP agent
sandbox (`erp_mapping.agent_server.AgentServer`) in this process with a generated catalogue
of `--skus` rows, loads the same rows as local stock (set-based, with their ledger movements),
registers the agent, drifts `--drift` SKUs in the ERP, and then measures, each in a fresh
process:

  reconcile   `manage.py erp_reconcile`: checksums, binary search, fetch, corrections
  again       the same once more: nothing has drifted
  full fetch  the baseline: every ERP row through the same signed `GET /stock` (pages of
              5,000), every local row in one query, compared in Python (after drifting
              another `--drift` SKUs, which it must find; it applies nothing)

It prints the rows fetched and their share of the catalogue, ranges compared, agent
requests and durations, with the ratio against the full fetch measured in the same run,
writes them as JSON under bench/results/, and finishes with `check_ledger`. PostgreSQL comes
from BENCH_DATABASE_ADMIN_URL (default 127.0.0.1).
"""

import argparse
import json
import os
import random
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from erp_pull import PRODUCTS_INSERT, run_measured  # noqa: E402
from stock_api import manage  # noqa: E402

from core.sandbox import SandboxServer  # noqa: E402
from erp_mapping.agent_server import AgentServer  # noqa: E402
from erp_mapping.agent_server.stock import generated_stock  # noqa: E402

PYTHON = sys.executable
DB_NAME = "syncstore_bench_reconcile"
SECRET = "bench-agent-secret"

SEED = (
    """
from django.db import connection, transaction
from erp_mapping.models import ErpAgent
from erp_mapping.services.agents import agent_register
from inventory import selectors, services
from inventory.services.bulk import TARGET_COLUMNS, staging_table_create, stock_levels_sync_staged
vendor = selectors.vendor_default()
services.warehouse_create(vendor=vendor, code="MAIN", name="Main", is_default=True)
services.warehouse_create(vendor=vendor, code="STORE", name="Store")
with connection.cursor() as cursor:"""
    + PRODUCTS_INSERT
    + """with transaction.atomic():
    raw = staging_table_create("sku varchar(100), code varchar(50), qty numeric(14, 3)")
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {raw} (sku, code, qty) FROM STDIN") as copy:
            with open(ROWS_FILE, "rb") as rows:
                copy.write(rows.read())
        targets = staging_table_create(TARGET_COLUMNS)
        cursor.execute(
            f"INSERT INTO {targets} (product_id, warehouse_id, on_hand) SELECT p.id, w.id, r.qty "
            f"FROM {raw} r JOIN inventory_product p ON p.sku = r.sku "
            f"JOIN inventory_warehouse w ON w.code = r.code"
        )
    stock_levels_sync_staged(table=targets, origin=services.Origin(source="bench", actor="bench"))
agent = agent_register(vendor=vendor, agent_url=AGENT_URL, erp_type="bench").agent
agent.outbound_secret = SECRET
agent.status = ErpAgent.Status.ONLINE
agent.save()
with connection.cursor() as cursor:
    cursor.execute("ANALYZE")
"""
)

FULL_FETCH = """
import time
from decimal import Decimal
from django.db import connection
from erp_mapping.models import ErpAgent
from erp_mapping.services.reconcile import agent_client_for
from inventory import selectors
started = time.perf_counter()
vendor = selectors.vendor_default()
client = agent_client_for(ErpAgent.objects.get(vendor=vendor))
theirs, cursor, calls = {}, "", 0
while True:
    params = {"from_sku": "", "to_sku": "", "limit": "5000"}
    if cursor:
        params["cursor"] = cursor
    data = client.call("GET", "stock", params=params).data
    calls += 1
    for row in data["rows"]:
        theirs[(row["sku"], row["warehouse"])] = Decimal(row["quantity"])
    cursor = data["next_cursor"]
    if not cursor:
        break
with connection.cursor() as db:
    db.execute(
        "SELECT p.sku, w.code, s.on_hand FROM inventory_stocklevel s "
        "JOIN inventory_product p ON p.id = s.product_id "
        "JOIN inventory_warehouse w ON w.id = s.warehouse_id "
        "WHERE p.vendor_id = %s AND s.on_hand <> 0",
        [vendor.pk],
    )
    ours = {(sku, code): on_hand for sku, code, on_hand in db}
drift = sum(1 for key in theirs.keys() | ours.keys() if theirs.get(key, 0) != ours.get(key, 0))
print(len(theirs), calls, drift, round(time.perf_counter() - started, 3))
"""


def bench_env(admin_url: str) -> dict[str, str]:
    base = admin_url.rsplit("/", 1)[0]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{base}/{DB_NAME}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "SLACK_WEBHOOK_URL": "",
        "DJANGO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    }


def last_event(admin_url: str) -> dict:
    import psycopg

    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{DB_NAME}") as conn:
        row = conn.execute(
            "SELECT status, skus_local, ranges_compared, ranges_differing, requests, "
            "rows_fetched, drift_found, drift_fixed, duration_ms, details, error_message "
            "FROM erp_mapping_reconciliationevent ORDER BY id DESC LIMIT 1"
        ).fetchone()
    names = [
        "status",
        "skus_local",
        "ranges_compared",
        "ranges_differing",
        "requests",
        "rows_fetched",
        "drift_found",
        "drift_fixed",
        "duration_ms",
        "details",
        "error_message",
    ]
    event = dict(zip(names, row, strict=True))
    details = event.pop("details")
    event["levels"] = len(details.get("levels", []))
    event["leaves"] = details.get("leaf_count", 0)
    return event


def drift(app: AgentServer, skus: int, count: int, rng: random.Random) -> list[str]:
    """Change `count` random ERP rows; return their SKUs."""
    rows = app.stock_rows()
    picked = sorted(rng.sample(range(skus), count))
    for index in picked:
        sku, code, quantity = rows[index]
        app.stock_set(sku, code, quantity + 1000)
    return [rows[index][0] for index in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--drift", type=int, default=10, help="SKUs drifted in the ERP.")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="Keep the bench database.")
    options = parser.parse_args()
    admin_url = os.environ.get(
        "BENCH_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    import psycopg

    env = bench_env(admin_url)
    warehouses = ("MAIN", "STORE")
    app = AgentServer(stock={"secret": SECRET})
    rng = random.Random(options.seed)
    with (
        SandboxServer(app) as server,
        tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as rows_file,
    ):
        loaded = app.stock_generate(options.skus, seed=options.seed, warehouses=warehouses)
        for sku, code, quantity in generated_stock(
            options.skus, seed=options.seed, warehouses=warehouses
        ):
            rows_file.write(f"{sku}\t{code}\t{quantity}\n")
        rows_file.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        results: dict = {
            "skus": options.skus,
            "drifted": options.drift,
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "phases": {},
        }
        try:
            manage(env, "migrate", "--noinput", "--verbosity", "0")
            seed = (
                SEED.replace("ROWS_FILE", repr(rows_file.name))
                .replace("AGENT_URL", repr(server.url))
                .replace("SKUS", str(options.skus))
                .replace("SECRET", repr(SECRET))
            )
            seconds, _, _ = run_measured(env, [PYTHON, "manage.py", "shell", "-c", seed])
            print(f"seeded {loaded:,} rows on both sides in {seconds:.1f} s")
            drifted = drift(app, options.skus, options.drift, rng)
            print(f"drifted in the ERP: {', '.join(drifted)}")
            command = [PYTHON, "manage.py", "erp_reconcile"]
            for phase in ("reconcile", "again"):
                served = app.stock_rows_served
                seconds, peak_mb, _ = run_measured(env, command)
                event = last_event(admin_url)
                if event["status"] != "completed":
                    raise SystemExit(f"{phase}: {event['status']} {event['error_message']}")
                event["rows_served"] = app.stock_rows_served - served
                results["phases"][phase] = {
                    "seconds": round(seconds, 2),
                    "peak_mb": peak_mb,
                    **event,
                }
            drift(app, options.skus, options.drift, rng)
            seconds, peak_mb, out = run_measured(
                env, [PYTHON, "manage.py", "shell", "-c", FULL_FETCH]
            )
            rows, calls, found, work = out.split()[-4:]
            results["phases"]["full fetch"] = {
                "seconds": round(seconds, 2),
                "peak_mb": peak_mb,
                "rows_fetched": int(rows),
                "requests": int(calls),
                "drift_found": int(found),
                "work_seconds": float(work),
            }
            ledger = manage(env, "check_ledger", capture=True)
        finally:
            os.unlink(rows_file.name)
            if not options.keep:
                with psycopg.connect(admin_url, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    report(results, ledger)


def report(results: dict, ledger: str) -> None:
    phases = results["phases"]
    skus = results["skus"]
    rec, again, full = phases["reconcile"], phases["again"], phases["full fetch"]
    print(
        f"\nERP reconciliation of {skus:,} SKUs, {results['drifted']} drifted, against the "
        f"agent over HTTP on PostgreSQL ({results['when']})\n"
    )
    print(
        f"{'phase':<11} {'seconds':>8} {'in-run s':>9} {'rows fetched':>13} {'share':>7} "
        f"{'requests':>9} {'ranges':>7} {'levels':>7} {'drift':>6} {'fixed':>6} {'peak MB':>8}"
    )
    for name, p in (("reconcile", rec), ("again", again)):
        print(
            f"{name:<11} {p['seconds']:>8.2f} {p['duration_ms'] / 1000:>9.2f} "
            f"{p['rows_fetched']:>13,} {p['rows_fetched'] / skus:>7.2%} {p['requests']:>9} "
            f"{p['ranges_compared']:>7} {p['levels']:>7} {p['drift_found']:>6} "
            f"{p['drift_fixed']:>6} {p['peak_mb']:>8.0f}"
        )
    print(
        f"{'full fetch':<11} {full['seconds']:>8.2f} {full['work_seconds']:>9.2f} "
        f"{full['rows_fetched']:>13,} {full['rows_fetched'] / skus:>7.2%} "
        f"{full['requests']:>9} {'-':>7} {'-':>7} {full['drift_found']:>6} {'-':>6} "
        f"{full['peak_mb']:>8.0f}"
    )
    rows_ratio = full["rows_fetched"] / max(rec["rows_fetched"], 1)
    time_ratio = full["seconds"] / rec["seconds"]
    work_ratio = full["work_seconds"] / (rec["duration_ms"] / 1000)
    print(
        f"\nrows fetched: {rec['rows_fetched']:,} of {skus:,} "
        f"({rec['rows_fetched'] / skus:.2%}; the full fetch reads {rows_ratio:,.0f}x more)"
    )
    print(
        f"full fetch / reconcile: {time_ratio:.2f}x wall clock (process start included), "
        f"{work_ratio:.2f}x in-run work (the full fetch only detects; it applies nothing)"
    )
    print(f"ledger: {ledger.strip().splitlines()[-1] if ledger.strip() else 'ok'}")
    results["rows_share"] = round(rec["rows_fetched"] / skus, 5)
    results["full_over_reconcile_rows"] = round(rows_ratio, 1)
    results["full_over_reconcile_seconds"] = round(time_ratio, 2)
    results["full_over_reconcile_work"] = round(work_ratio, 2)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"reconcile_{skus}_{datetime.now(UTC):%Y%m%d_%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
