"""Demo steps of the ERP integration, all through the public interfaces.

The sample Convex mappings are seeded with the management command; an admin API key
registers an agent for the sample's vendor; the agent simulator pushes warehouses, items and
stock through the ingest API (in process, through the whole middleware stack); the ERP
sandbox then serves changed stock counts and the nightly pull applies them.
"""

import io
import time
import warnings
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.db.models import Count
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone

from core.demo import DemoContext, demo_step
from core.sandbox import SandboxServer
from core.services import api_key_create
from erp_mapping.agent_server import AgentServer
from erp_mapping.clients.breaker import vendor_breaker
from erp_mapping.management.commands.erp_pull import run_report
from erp_mapping.management.commands.erp_reconcile import event_report
from erp_mapping.models import ErpSyncEvent, ErpSyncJob, ReconciliationEvent, SyncRun
from erp_mapping.sandbox import DEFAULT_TOKEN, AgentSimulator, ErpSandbox
from erp_mapping.services.erp_sync import erp_sync_sweep
from erp_mapping.services.pull import erp_pull_run
from erp_mapping.services.reconcile import erp_reconcile
from inventory.models import StockLevel, Vendor

SAMPLE = Path(__file__).resolve().parent / "data" / "item-mapping.json"
SAMPLE_VENDOR = "971a1d7b-8cd4-41d9-925f-f658deb6efa5"
ITEMS = 1200

# The API is called in process: WhiteNoise warns that the (uncollected) static root is
# missing, which does not matter to an API call.
warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)


def _admin_client(ctx: DemoContext) -> Client:
    if "erp_admin_client" not in ctx.facts:
        key = api_key_create(name="demo-erp-admin", scopes=["admin"], created_by="demo").key
        ctx.facts["erp_admin_client"] = Client(HTTP_X_API_KEY=key)
    return ctx.facts["erp_admin_client"]


@demo_step(150, "ERP code mappings (Convex sample)")
def seed_mappings(ctx: DemoContext) -> str:
    out = io.StringIO()
    call_command("seed_erp_mappings", str(SAMPLE), stdout=out, stderr=io.StringIO())
    again = io.StringIO()
    call_command("seed_erp_mappings", str(SAMPLE), stdout=again, stderr=io.StringIO())
    for line in out.getvalue().strip().splitlines():
        ctx.say(f"    {line}")
    total = next(
        (line.split() for line in again.getvalue().splitlines() if line.startswith("total")), []
    )
    if len(total) != 6:
        raise RuntimeError(f"unexpected seed output: {again.getvalue()}")
    return f"seeded from {SAMPLE.name}; a second run: {total[3]} unchanged, {total[1]} created"


@demo_step(155, "ERP agent")
def register_agent(ctx: DemoContext) -> str:
    answer = _admin_client(ctx).post(
        "/api/v1/erp/agents/",
        {
            "vendor_id": SAMPLE_VENDOR,
            "agent_url": "http://erp-agent.local:8080",
            "erp_type": "convex",
        },
        content_type="application/json",
    )
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"agent registration answered {answer.status_code}: {answer.content}")
    token = answer.json()["token"]
    agent = AgentSimulator(token=token, client=Client())
    ctx.facts["erp_agent"] = agent
    beat = agent.heartbeat()
    return (
        f"registered for vendor {SAMPLE_VENDOR[:8]}, token shown once; heartbeat: {beat['status']}"
    )


@demo_step(160, "Agent ingest (warehouses, items, stock)")
def agent_ingest(ctx: DemoContext) -> str:
    agent: AgentSimulator = ctx.facts["erp_agent"]
    warehouses = agent.push_warehouses()
    items = list(agent.sample_items(ITEMS))
    pushed = agent.push_items(items)
    stock_rows = list(agent.sample_stock(items))
    stock = agent.push_stock(stock_rows)
    replay = agent.push_stock(stock_rows)
    for outcome in (warehouses, pushed, stock):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items()) if v)
        batches = f"{outcome.rows:>5} rows in {outcome.batches} batch(es)"
        ctx.say(f"    {outcome.kind:<10} {batches}: {counts}")
    unchanged = replay.counts.get("unchanged", 0)
    return f"the same stock batch again: {unchanged} of {replay.rows} unchanged"


@demo_step(170, "Nightly ERP pull (ERP sandbox)")
def nightly_pull(ctx: DemoContext) -> str:
    vendor = Vendor.objects.get(pk=SAMPLE_VENDOR)
    # The ERP counts every item: most quantities moved since the agent's push, a few rows
    # are garbage, and 20 SKUs are not known here yet.
    app = ErpSandbox(
        token=DEFAULT_TOKEN,
        skus=ITEMS + 20,
        warehouses=["MAIN"],
        generation=1,
        changed_ratio=0.8,
        discontinued_ratio=0.02,
        garbage_ratio=0.005,
    )
    server = ctx.stack.enter_context(SandboxServer(app))
    answer = _admin_client(ctx).put(
        f"/api/v1/erp/connections/{SAMPLE_VENDOR}/",
        {"base_url": server.url, "token": DEFAULT_TOKEN, "enabled": True},
        content_type="application/json",
    )
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"connection answered {answer.status_code}: {answer.content}")
    with override_settings(ERP_PULL_RETRY_DELAYS=[0.2, 0.2, 0.2]):
        app.configure(fail_first=1)  # the first call fails: the pull retries
        run = erp_pull_run(vendor=vendor, trigger=SyncRun.Trigger.COMMAND)
        again = erp_pull_run(vendor=vendor, trigger=SyncRun.Trigger.COMMAND)
    for line in run_report(run).splitlines():
        ctx.say(f"    {line}")
    return (
        f"run {run.pk} {run.status} on attempt {run.attempts}; the same counts again: "
        f"{again.items_changed} changed"
    )


@demo_step(197, "Orders to the ERP (agent, one outage)")
def orders_to_erp(ctx: DemoContext) -> str:
    """Serve the agent, register it, take it down (the circuit opens, the jobs wait), bring
    it back: every order reaches the ERP once, through answers, callbacks and resends."""
    # This run's jobs (a second demo run on the same database finds the first's completed).
    S = ErpSyncJob.Status
    open_statuses = [S.PENDING, S.FAILED, S.AWAITING_CALLBACK, S.PROCESSING]
    jobs = ErpSyncJob.objects.filter(
        pk__in=list(
            ErpSyncJob.objects.filter(status__in=open_statuses).values_list("pk", flat=True)
        )
    )
    waiting = jobs.filter(status=S.PENDING, attempts=0).count()
    app = AgentServer(orders={"mode": "async", "syncstore_url": settings.PUBLIC_BASE_URL})
    server = ctx.stack.enter_context(SandboxServer(app))
    ctx.facts["agent_server"] = server
    # The sample vendor's agent (whose stock the reconciliation reads) and the agent of the
    # vendor the marketplace orders belong to: one agent process serving both, at the
    # server's URL. Re-registering gives each a new token and outbound secret.
    order_vendors = {str(v) for v in jobs.values_list("vendor_id", flat=True).distinct()}
    for vendor_id in sorted({SAMPLE_VENDOR, *order_vendors}):
        answer = _admin_client(ctx).post(
            "/api/v1/erp/agents/",
            {"vendor_id": vendor_id, "agent_url": server.url, "erp_type": "convex"},
            content_type="application/json",
        )
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"agent registration answered {answer.status_code}")
        registered = answer.json()
        app.credentials_add(
            secret=registered["outbound_secret"], callback_token=registered["token"]
        )
        if vendor_id == SAMPLE_VENDOR and "erp_agent" in ctx.facts:
            ctx.facts["erp_agent"].token = registered["token"]
    quick = {
        "ERP_BREAKER_FAIL_MAX": 3,
        "ERP_BREAKER_RESET_SECONDS": 1,
        # Longer than sending every job takes, so only the lost callbacks time out.
        "ERP_CALLBACK_TIMEOUT": 5,
        "ERP_SYNC_RETRY_BASE_SECONDS": 0.2,
        "ERP_SYNC_RETRY_MAX_SECONDS": 0.5,
    }
    with override_settings(**quick):
        # The outage: nothing listens at the agent's address. Three calls fail, the
        # circuit opens, and every other job waits for it without a call.
        server.stop()
        erp_sync_sweep()
        calls_failed = jobs.filter(status=ErpSyncJob.Status.FAILED).count()
        held = jobs.filter(
            status=ErpSyncJob.Status.PENDING, last_error__contains="circuit is open"
        ).count()
        states = {vendor_breaker(v).state().state for v in order_vendors}
        ctx.say(
            f"    agent down: {calls_failed} jobs failed (the circuit opens after 3 failures "
            f"in a row), circuit {'/'.join(sorted(states))}, {held} jobs wait without a call"
        )
        # The agent is back; after the reset timeout a trial call closes the circuit.
        server.start()
        time.sleep(1.05)
        _sweep_due(jobs)
        lost = app.callbacks_drop(3)  # the agent never calls back about these
        answers = []
        while app.callbacks_held:  # completed creates send their orders' cancels meanwhile
            answers += app.callbacks_release()
        replayed = app.callbacks_replay()  # the agent sends its callbacks once more
        time.sleep(5.05)  # past the callback timeout: the three are sent again
        _sweep_due(jobs)
        _sweep_due(jobs)  # cancels released by their creates, if any are left
    by_status = dict(
        jobs.order_by().values_list("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    creates = jobs.filter(operation=ErpSyncJob.Operation.ORDER_CREATE)
    completed = jobs.filter(status=ErpSyncJob.Status.COMPLETED)
    via_callback = completed.filter(completed_via=ErpSyncJob.CompletedVia.CALLBACK).count()
    resent = ErpSyncEvent.objects.filter(kind=ErpSyncEvent.Kind.CALLBACK_TIMEOUT).count()
    documents = app.documents_created()
    cancelled = sum(1 for d in app.documents if d.status == "cancelled")
    ctx.say(
        f"    agent back: {completed.count()} of {jobs.count()} jobs completed "
        f"({via_callback} by callback, {completed.count() - via_callback} by answer); "
        f"{resent} resent after {lost} lost callbacks; "
        f"{sum(1 for s in replayed if s == 200)} replayed callbacks changed nothing"
    )
    if any(status != 200 for status in answers + replayed):
        raise RuntimeError(f"callbacks answered {sorted(set(answers + replayed))}")
    if documents != creates.count() or by_status.get(ErpSyncJob.Status.COMPLETED) != len(jobs):
        raise RuntimeError(f"not every order synced once: {by_status}, {documents} documents")
    return (
        f"{creates.count()} orders and {len(jobs) - creates.count()} cancellations "
        f"({waiting} jobs waited for an agent) in the ERP once: "
        f"{documents} documents, {cancelled} cancelled; circuit "
        f"{'/'.join(sorted({vendor_breaker(v).state().state for v in order_vendors}))}"
    )


def _sweep_due(jobs) -> None:
    """Run the sweep with every waiting job due now (the demo does not wait out backoffs),
    again until it queues nothing: a circuit past its timeout gets one job (the trial)
    first, and each vendor at most a batch per sweep."""
    for _ in range(10):
        jobs.filter(status__in=[ErpSyncJob.Status.PENDING, ErpSyncJob.Status.FAILED]).update(
            next_attempt_at=timezone.now()
        )
        if not erp_sync_sweep().queued:
            return


def _agent_server(ctx: DemoContext) -> AgentServer:
    """The agent step 197 serves over HTTP: the sample vendor's agent is registered there with
    its outbound secret, which the agent's stock endpoints check too."""
    return ctx.facts["agent_server"].app


@demo_step(198, "ERP reconciliation (five drifted SKUs)")
def erp_reconciliation(ctx: DemoContext) -> str:
    vendor = Vendor.objects.get(pk=SAMPLE_VENDOR)
    app = _agent_server(ctx)
    # The ERP counts what is held here, except five SKUs whose counts drifted.
    levels = list(
        StockLevel.objects.filter(product__vendor=vendor)
        .order_by("product__sku", "warehouse__code")
        .values_list("product__sku", "warehouse__code", "on_hand")
    )
    app.stock_load(levels)
    held = [row for row in levels if row[2] > 0]
    picks = [held[i * len(held) // 5 + 3] for i in range(5)]
    changes = [Decimal(7), -picks[1][2], Decimal("2.5"), Decimal(1), Decimal(-1)]
    for (sku, code, quantity), change in zip(picks, changes, strict=True):
        app.stock_set(sku, code, max(Decimal(0), quantity + change))
    drifted = ", ".join(pick[0] for pick in picks)
    ctx.say(f"    the ERP holds {app.stock_count()} rows; drifted: {drifted}")
    # A sample of a few thousand rows: a finer first cut and smaller leaves than the
    # defaults (64 and 64), so the search has levels to go down.
    with override_settings(ERP_RECONCILE_RANGES=16, ERP_RECONCILE_LEAF_ROWS=16):
        event = erp_reconcile(vendor=vendor, trigger=ReconciliationEvent.Trigger.COMMAND)
        again = erp_reconcile(vendor=vendor, trigger=ReconciliationEvent.Trigger.COMMAND)
    for line in event_report(event).splitlines():
        ctx.say(f"    {line}")
    if event.status != ReconciliationEvent.Status.COMPLETED:
        raise RuntimeError(f"the reconciliation {event.status}: {event.error_message}")
    return (
        f"found {event.drift_found} drifted rows, fixed {event.drift_fixed}, fetching "
        f"{event.rows_fetched} of {event.skus_local} rows; again: {again.drift_found} drift, "
        f"{again.rows_fetched} rows fetched"
    )
