"""The circuit breaker of each vendor's agent, in one process and across processes."""

import os
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from core.sandbox import SandboxServer
from erp_mapping.agent_server import AgentServer
from erp_mapping.clients.agent import AgentCallError, AgentUnavailable
from erp_mapping.clients.breaker import vendor_breaker
from erp_mapping.models import ErpSyncEvent, ErpSyncJob
from erp_mapping.services.agents import agent_register
from erp_mapping.services.erp_sync import erp_sync_sweep
from orders.services import OrderLineInput, order_create
from tests.erp_mapping.sync_support import API, job_of, orders_calls
from tests.helpers import wait_for
from tests.inventory.factories import VendorFactory

S = ErpSyncJob.Status
ROOT = Path(__file__).resolve().parents[2]


def fail(status: int | None = None):
    def send():
        raise AgentCallError("boom", status=status)

    return send


@pytest.mark.django_db
def test_breaker_opens_after_repeated_failures_jobs_wait_and_a_trial_closes_it(
    agent, place, sync_settings
):
    # given: a circuit that opens after 3 failures and lets a trial through after 3 s (the
    # opening time is kept to the second in Redis: between 2 and 3 s)
    sync_settings.ERP_BREAKER_FAIL_MAX = 3
    sync_settings.ERP_BREAKER_RESET_SECONDS = 3
    agent.orders_configure(down=True)

    # when: five orders come in while the agent's ERP is down
    orders = [place() for _ in range(5)]

    # then: three calls were made (and failed, each using an attempt); the circuit opened
    # and the last two jobs wait for it without a call and without using an attempt
    assert len(orders_calls(agent)) == 3
    jobs = [job_of(order) for order in orders]
    assert [(j.status, j.attempts) for j in jobs[:3]] == [(S.FAILED, 1)] * 3
    assert [(j.status, j.attempts) for j in jobs[3:]] == [(S.PENDING, 0)] * 2
    state = vendor_breaker(agent.registered.agent.vendor_id).state()
    assert (state.state, state.shared) == ("open", True)
    assert all(j.next_attempt_at == state.retry_at for j in jobs[3:])
    assert ErpSyncEvent.objects.filter(kind=ErpSyncEvent.Kind.WAITING).count() == 2
    # a sweep while it is open makes no call either
    ErpSyncJob.objects.update(next_attempt_at=timezone.now())
    erp_sync_sweep()
    assert len(orders_calls(agent)) == 3
    assert sorted(ErpSyncJob.objects.values_list("attempts", flat=True)) == [0, 0, 1, 1, 1]

    # when: the agent is back and the reset timeout has passed
    agent.orders_configure(down=False)
    time.sleep(3.05)
    ErpSyncJob.objects.update(next_attempt_at=timezone.now())

    # then: the sweep sends one job, the trial, which closes the circuit; the next sweep
    # sends the rest, and every order is in the ERP once
    assert erp_sync_sweep().queued == 1
    assert len(orders_calls(agent)) == 4
    assert vendor_breaker(agent.registered.agent.vendor_id).state().state == "closed"
    assert erp_sync_sweep().queued == 4
    assert set(ErpSyncJob.objects.values_list("status", flat=True)) == {S.COMPLETED}
    assert agent.documents_created() == 5
    assert len(orders_calls(agent)) == 3 + 5


@pytest.mark.django_db
def test_breaker_a_failed_trial_opens_the_circuit_again(vendor, sync_settings):
    sync_settings.ERP_BREAKER_FAIL_MAX = 2
    sync_settings.ERP_BREAKER_RESET_SECONDS = 2  # 1 to 2 s: opening times are to the second
    breaker = vendor_breaker(vendor.pk)
    for _ in range(2):
        with pytest.raises(AgentCallError):
            breaker.call(fail(503))
    assert breaker.state().state == "open"
    with pytest.raises(AgentUnavailable):
        breaker.call(lambda: pytest.fail("no call while open"))
    time.sleep(2.05)
    with pytest.raises(AgentCallError) as trial:
        breaker.call(fail(None))
    assert not isinstance(trial.value, AgentUnavailable)  # the trial was made, and failed
    state = breaker.state()
    assert state.state == "open"
    assert state.retry_at > timezone.now()


@pytest.mark.django_db
def test_breaker_counts_only_the_agent_being_unwell(vendor, sync_settings):
    sync_settings.ERP_BREAKER_FAIL_MAX = 2
    breaker = vendor_breaker(vendor.pk)
    for send in (fail(400), fail(422), fail(409)):
        with pytest.raises(AgentCallError):
            breaker.call(send)

    def our_bug():
        raise ValueError("a bug of ours")

    with pytest.raises(ValueError, match="a bug of ours"):
        breaker.call(our_bug)
    assert breaker.state().failures == 0
    for status in (500, 429):
        with pytest.raises(AgentCallError):
            breaker.call(fail(status))
    assert breaker.state().state == "open"


@pytest.mark.django_db
def test_breaker_only_one_trial_runs_at_a_time(vendor, sync_settings):
    sync_settings.ERP_BREAKER_FAIL_MAX = 1
    sync_settings.ERP_BREAKER_RESET_SECONDS = 2  # 1 to 2 s: opening times are to the second
    breaker = vendor_breaker(vendor.pk)
    with pytest.raises(AgentCallError):
        breaker.call(fail(None))
    time.sleep(2.05)
    seen = []

    def trial():
        # while this trial runs, another caller is told to wait
        with pytest.raises(AgentUnavailable, match="trial call is running"):
            vendor_breaker(vendor.pk).call(lambda: pytest.fail("a second trial"))
        seen.append("trial")
        return "ok"

    assert breaker.call(trial) == "ok"
    assert seen == ["trial"]
    assert breaker.state().state == "closed"


@pytest.mark.django_db
def test_breaker_redis_outage_degrades_to_a_closed_circuit_and_the_send_goes_on(
    agent, place, settings
):
    # given: the breaker's Redis is unreachable (the cache itself still works)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    order = place()

    job = job_of(order)
    assert (job.status, job.erp_reference) == (S.COMPLETED, "SO-000001")
    state = vendor_breaker(agent.registered.agent.vendor_id).state()
    assert (state.state, state.failures) == ("closed", 0)


@pytest.mark.django_db
def test_breaker_state_shows_in_readiness_and_metrics_without_failing_readiness(
    vendor, sync_settings
):
    sync_settings.ERP_BREAKER_FAIL_MAX = 1
    agent_register(vendor=vendor, agent_url="http://127.0.0.1:1", erp_type="convex")
    with pytest.raises(AgentCallError):
        vendor_breaker(vendor.pk).call(fail(None))

    ready = APIClient().get("/health/ready")
    metrics = APIClient().get("/metrics").content.decode()

    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    assert ready.json()["details"]["erp_agent_breakers"][str(vendor.pk)]["state"] == "open"
    assert f'syncstore_erp_agent_breaker_state{{vendor="{vendor.pk}"}} 2.0' in metrics
    assert 'syncstore_erp_sync_jobs{status="pending"} 0.0' in metrics


@pytest.mark.django_db
def test_breaker_reregistering_the_agent_closes_its_circuit(
    vendor, sync_settings, django_capture_on_commit_callbacks
):
    sync_settings.ERP_BREAKER_FAIL_MAX = 1
    with pytest.raises(AgentCallError):
        vendor_breaker(vendor.pk).call(fail(None))
    with django_capture_on_commit_callbacks(execute=True):
        agent_register(vendor=vendor, agent_url="http://127.0.0.1:2", erp_type="convex")
    assert vendor_breaker(vendor.pk).state().state == "closed"


# --- across processes -------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys

    import django

    django.setup()
    from erp_mapping.clients.agent import AgentCallError, AgentClient, AgentUnavailable
    from erp_mapping.clients.breaker import vendor_breaker

    vendor_id, url, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = AgentClient(
        agent_url=url, secret="s", timeout=2, breaker=vendor_breaker(vendor_id)
    )
    body = {"operation": "order.create", "order": {"order_number": "P-1", "lines": []}}
    for _ in range(calls):
        try:
            client.call("POST", "/orders", body=body, headers={"Idempotency-Key": "1"})
            print("ok")
        except AgentUnavailable:
            print("unavailable")
        except AgentCallError as exc:
            print(f"failed {exc.status}")
    print(vendor_breaker(vendor_id).state().state)
    """
)


def run_process(vendor_id: str, url: str, calls: int) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "REDIS_URL": settings.REDIS_URL,
        "ERP_BREAKER_FAIL_MAX": "4",
        "ERP_BREAKER_RESET_SECONDS": "5",
        "DJANGO_LOG_LEVEL": "CRITICAL",
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT, vendor_id, url, str(calls)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split("\n")[:-1]


@pytest.mark.django_db
def test_breaker_failures_in_two_processes_open_one_circuit_and_a_trial_closes_it(vendor):
    # given: the agent's ERP is down (503 to every order)
    app = AgentServer(orders={"down": True, "secret": "s"})
    with SandboxServer(app) as server:
        vendor_id = str(vendor.pk)

        # when: one process fails twice, another twice more (4 open the circuit)
        first = run_process(vendor_id, server.url, 2)
        second = run_process(vendor_id, server.url, 3)

        # then: the second process's fourth failure opened the circuit for both, and its
        # next call was never made; the first process now sees it open too
        assert first == ["failed 503", "failed 503", "closed"]
        assert second == ["failed 503", "failed 503", "unavailable", "open"]
        assert run_process(vendor_id, server.url, 1) == ["unavailable", "open"]
        assert len(app.requests) == 4
        assert vendor_breaker(vendor_id).state().state == "open"

        # when: the agent is back, after the reset timeout one process's trial closes it
        app.orders_configure(down=False)
        time.sleep(5.2)
        assert run_process(vendor_id, server.url, 1) == ["ok", "closed"]
        assert run_process(vendor_id, server.url, 1) == ["ok", "closed"]
    assert len(app.requests) == 6
    assert app.documents_created() == 1


# --- a real worker ----------------------------------------------------------------------------


@pytest.mark.worker
def test_erp_sync_send_runs_on_a_real_worker_from_the_orders_queue(
    celery_worker, vendor, stocked, settings
):
    settings.ERP_BREAKER_FAIL_MAX = 100
    product = stocked(10)
    app = AgentServer(orders={"callback_client": APIClient(), "mode": "async"})
    with SandboxServer(app) as server:
        registered = agent_register(vendor=vendor, agent_url=server.url, erp_type="convex")
        app.credentials_add(secret=registered.outbound_secret, callback_token=registered.token)

        # when: an order is confirmed; its job's send goes to the broker on commit
        order = order_create(
            vendor=vendor,
            order_number="W-1",
            lines=[OrderLineInput(sku=product.sku, quantity=Decimal("1"))],
            actor=API,
        )

        # then: the worker sends it (202), and the callback completes it
        wait_for(lambda: job_of(order).status == S.AWAITING_CALLBACK)
        assert app.callbacks_release() == [200]
    job = job_of(order)
    assert (job.status, job.attempts, job.completed_via) == (S.COMPLETED, 1, "callback")
    assert app.documents_created() == 1


# --- a stalled Redis, a lost opening time -----------------------------------------------------


@pytest.fixture
def stalled_redis():
    """A listener that accepts connections and never answers (a stalled Redis)."""
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(1)
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.django_db
def test_breaker_states_of_a_stalled_redis_answer_ready_and_metrics_within_a_second(
    sync_settings, stalled_redis, admin_client
):
    # given: three agents, and the breakers' Redis accepts connections but never answers
    for _ in range(3):
        agent_register(vendor=VendorFactory(), agent_url="http://127.0.0.1:1", erp_type="x")
    sync_settings.REDIS_URL = stalled_redis

    # when: readiness, the metrics and the job console are read
    timings = {}
    for name, path in (
        ("ready", "/health/ready"),
        ("metrics", "/metrics"),
        ("admin", "/admin/erp_mapping/erpsyncjob/"),
    ):
        started = time.perf_counter()
        answer = admin_client.get(path)
        timings[name] = time.perf_counter() - started
        assert answer.status_code == 200, name

    # then: each answers within about a second (one short read for all vendors)
    assert max(timings.values()) < 1.5, timings
    details = APIClient().get("/health/ready").json()["details"]["erp_agent_breakers"]
    assert len(details) == 3
    assert all(d["state"] == "closed" and "error" in d for d in details.values())


@pytest.mark.django_db
def test_breaker_open_without_its_opening_time_lets_a_trial_through(vendor, sync_settings):
    import redis as redis_client

    from erp_mapping.clients.breaker import _namespace

    sync_settings.ERP_BREAKER_FAIL_MAX = 1
    sync_settings.ERP_BREAKER_RESET_SECONDS = 600
    breaker = vendor_breaker(vendor.pk)
    with pytest.raises(AgentCallError):
        breaker.call(fail(None))
    assert breaker.state().state == "open"
    # given: the opening time is lost (evicted, expired, deleted by hand)
    redis_client.Redis.from_url(settings.REDIS_URL).delete(
        f"{_namespace(str(vendor.pk))}:pybreaker:opened_at"
    )
    assert breaker.state().retry_at <= timezone.now()

    # when/then: the next call is the trial, and its success closes the circuit
    assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state().state == "closed"
