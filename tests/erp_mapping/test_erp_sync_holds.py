"""Orders to the ERP: what holds a job (mapping, duplicates, its create, outages), the key,
callbacks that overtake the worker, a first deploy, and the callbacks' own throttle."""

import json
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from channels_sync.models import Conflict
from core.models import DeadLetter
from core.sandbox import Fault
from core.services import dead_letter_retry
from erp_mapping.agent_server import AgentServer
from erp_mapping.models import ErpAgent, ErpSyncEvent, ErpSyncJob
from erp_mapping.services.agents import agent_register
from erp_mapping.services.erp_sync import (
    erp_sync_callback,
    erp_sync_job_create,
    erp_sync_job_retry,
    erp_sync_send,
    erp_sync_sweep,
)
from erp_mapping.services.erp_sync import send as erp_sync_send_module
from erp_mapping.services.erp_sync import sweep as erp_sync_sweep_module
from orders.models import Order
from orders.services import order_cancel
from tests.erp_mapping.sync_support import API, job_of, orders_calls
from tests.inventory.factories import VendorFactory

pytestmark = pytest.mark.django_db
S = ErpSyncJob.Status
CALLBACK = "/api/v1/erp/agents/callback/"


@pytest.fixture
def confirm(agent, stocked, django_capture_on_commit_callbacks):
    """Confirm an API order whose row gets `**change` before its job is sent."""
    from decimal import Decimal

    from orders.services import OrderLineInput, order_create

    product = stocked(100)
    counter = iter(range(1, 1000))

    def make(**change) -> Order:
        with django_capture_on_commit_callbacks(execute=False) as hooks:
            order = order_create(
                vendor=product.vendor,
                order_number=f"H-{next(counter)}",
                lines=[OrderLineInput(sku=product.sku, quantity=Decimal(1))],
                actor=API,
                customer={"name": "Ann"},
            )
        Order.objects.filter(pk=order.pk).update(**change)
        with django_capture_on_commit_callbacks(execute=True):
            for hook in hooks:
                hook()
        return order

    return make


def sent_bodies(agent: AgentServer) -> list[dict]:
    return [json.loads(call.body) for call in orders_calls(agent)]


# --- 1. unmapped orders -----------------------------------------------------------------------


def test_erp_sync_an_order_needing_mapping_waits_then_goes_with_its_mapped_payload(agent, confirm):
    # given: an order confirmed while a line still needs mapping
    order = confirm(needs_mapping=True)

    # then: its create job waits: no call, no attempt, no payload yet, a clear reason
    job = job_of(order)
    assert (job.status, job.attempts, job.wait_reason) == (S.PENDING, 0, "needs_mapping")
    assert job.payload == {}
    assert "needs mapping" in job.last_error
    assert orders_calls(agent) == []
    # and: the sweep leaves it alone while it needs mapping (no second waiting event)
    assert erp_sync_sweep().queued == 0
    assert erp_sync_send(job_id=job.pk).outcome == "waiting"
    assert job.events.filter(kind=ErpSyncEvent.Kind.WAITING).count() == 1

    # when: the order is mapped (and corrected meanwhile), the sweep sends it
    Order.objects.filter(pk=order.pk).update(needs_mapping=False, customer={"name": "Bo"})
    assert erp_sync_sweep().queued == 1

    # then: the payload was built at the send, from the order as it is now
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.COMPLETED, 1)
    [body] = sent_bodies(agent)
    assert body["order"]["customer"] == {"name": "Bo"}
    assert job.payload == body["order"]


def test_erp_sync_a_dead_job_retried_is_rebuilt_and_sent_under_a_new_key(
    agent, place, django_capture_on_commit_callbacks
):
    # given: the agent refused the order (unknown customer): dead, with a dead letter
    agent.inject(Fault(status=422, count=1, body='{"error": "unknown customer"}'))
    order = place()
    job = job_of(order)
    assert job.status == S.DEAD
    first_key = job.idempotency_key
    [refused] = sent_bodies(agent)

    # when: staff correct the order and retry the dead letter
    Order.objects.filter(pk=order.pk).update(customer={"name": "Ann Known"})
    letter = DeadLetter.objects.get(kwargs__job_id=job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="user:ops")

    # then: the corrected order went out under a new key, and the ERP took it
    job.refresh_from_db()
    assert (job.status, job.erp_reference) == (S.COMPLETED, "SO-000001")
    assert job.idempotency_key != first_key
    first, second = orders_calls(agent)
    assert first.headers["Idempotency-Key"] == str(first_key)
    assert second.headers["Idempotency-Key"] == str(job.idempotency_key)
    assert refused["order"]["customer"] == {"name": "Ann"}
    assert json.loads(second.body)["order"]["customer"] == {"name": "Ann Known"}


# --- 2. the idempotency key -------------------------------------------------------------------


def test_erp_sync_every_job_has_its_own_uuid_key(agent, place, django_capture_on_commit_callbacks):
    order = place()
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order=order, actor=API)
    create, cancel = job_of(order), job_of(order, "order.cancel")

    keys = [call.headers["Idempotency-Key"] for call in orders_calls(agent)]

    assert keys == [str(create.idempotency_key), str(cancel.idempotency_key)]
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert len(set(keys)) == 2


# --- 3. duplicate orders ----------------------------------------------------------------------


def test_erp_sync_an_order_in_an_open_duplicate_conflict_waits_until_it_is_settled(
    agent, confirm, vendor
):
    # given: a duplicate-order conflict about this marketplace order id is open
    conflict = Conflict.objects.create(
        kind=Conflict.Kind.DUPLICATE_ORDER,
        vendor=vendor,
        reference="MP-77",
        source=Conflict.Source.ORDER,
    )
    order = confirm(external_id="MP-77")
    other = confirm(external_id="MP-78")

    # then: its create waits; an order of another id goes
    job = job_of(order)
    assert (job.status, job.attempts, job.wait_reason) == (S.PENDING, 0, "duplicate_order")
    assert job_of(other).status == S.COMPLETED
    assert erp_sync_sweep().queued == 0

    # when: staff settle the conflict
    Conflict.objects.filter(pk=conflict.pk).update(status=Conflict.Status.IGNORED)

    # then: the sweep sends it
    assert erp_sync_sweep().queued == 1
    assert job_of(order).status == S.COMPLETED


# --- 7. a failed callback before the worker records the 202 -----------------------------------


def test_erp_sync_a_failed_callback_overtaking_the_accepted_record_is_applied(agent, place):
    # given: a job a worker has claimed and is sending (the agent has accepted it)
    agent.orders_configure(mode="async", never_call_back=True)
    agent.credentials.clear()  # the first send waits: then send it by hand, step by step
    order = place()
    job = job_of(order)
    agent.credentials_add(
        secret=agent.registered.outbound_secret, callback_token=agent.registered.token
    )
    ErpSyncJob.objects.filter(pk=job.pk).update(next_attempt_at=None)
    lease = erp_sync_send_module._claim(job.pk, now=timezone.now())
    claimed = ErpSyncJob.objects.select_related("order").get(pk=job.pk)

    # when: the agent's failed callback arrives before the worker records the 202
    registered = agent.registered
    answer = agent_api(registered.token).post(
        CALLBACK, {"job_id": job.pk, "status": "failed", "error": "no stock in ERP"}, format="json"
    )
    assert answer.status_code == 200
    assert answer.json()["changed"] is True
    assert erp_sync_send_module._send_claimed(claimed, lease) == "failed"

    # then: the failure counted for the accepted attempt: retried after a backoff
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.FAILED, 1)
    assert "no stock in ERP" in job.last_error
    assert job.reported_failure == ""
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[-2:] == [ErpSyncEvent.Kind.FAILURE_REPORTED, ErpSyncEvent.Kind.FAILED]


def test_erp_sync_a_failed_callback_about_an_earlier_key_changes_nothing(agent, place):
    agent.orders_configure(mode="async", never_call_back=True)
    job = job_of(place())
    assert job.status == S.AWAITING_CALLBACK

    result = erp_sync_callback(
        agent=agent.registered.agent,
        job_id=job.pk,
        status="failed",
        error="old",
        idempotency_key=uuid.uuid4(),
    )

    assert result.changed is False
    job.refresh_from_db()
    assert job.status == S.AWAITING_CALLBACK


# --- 8. a cancel whose create is dead ---------------------------------------------------------


def test_erp_sync_a_cancel_of_a_dead_create_is_dead_then_revived_with_it(
    agent, place, django_capture_on_commit_callbacks
):
    # given: the order's create was refused (dead), then the order is cancelled
    agent.inject(Fault(status=400, count=1))
    order = place()
    create = job_of(order)
    assert create.status == S.DEAD
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order=order, actor=API)

    # then: the cancel is dead too, with its own dead letter, and no call was made for it
    cancel = job_of(order, "order.cancel")
    assert (cancel.status, cancel.attempts, cancel.wait_reason) == (S.DEAD, 0, "create_dead")
    assert "create job is dead" in cancel.last_error
    assert DeadLetter.objects.filter(kwargs__job_id=cancel.pk, status="open").count() == 1
    assert len(orders_calls(agent)) == 1
    assert erp_sync_sweep().queued == 0

    # when: staff retry the create, which completes
    letter = DeadLetter.objects.get(kwargs__job_id=create.pk)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="user:ops")

    # then: the cancel was revived by itself and cancelled the document
    cancel.refresh_from_db()
    assert cancel.status == S.COMPLETED
    assert agent.documents[0].status == "cancelled"
    assert DeadLetter.objects.get(kwargs__job_id=cancel.pk).status == "resolved"


# --- 9. outages and fairness ------------------------------------------------------------------


def test_erp_sync_sweep_leaves_an_open_vendors_jobs_untouched(agent, place, sync_settings):
    sync_settings.ERP_BREAKER_FAIL_MAX = 1
    sync_settings.ERP_BREAKER_RESET_SECONDS = 600
    agent.orders_configure(down=True)
    jobs = [job_of(place()) for _ in range(3)]
    ErpSyncJob.objects.update(next_attempt_at=timezone.now())
    events = ErpSyncEvent.objects.count()
    before = list(ErpSyncJob.objects.order_by("pk").values_list("status", "updated_at"))

    report = erp_sync_sweep()

    assert (report.vendors_skipped, report.queued) == (1, 0)
    assert ErpSyncEvent.objects.count() == events
    assert list(ErpSyncJob.objects.order_by("pk").values_list("status", "updated_at")) == before
    assert len(orders_calls(agent)) == 1
    assert len(jobs) == 3


def test_erp_sync_sweep_caps_each_vendor_so_one_backlog_starves_no_one(
    agent, monkeypatch, django_capture_on_commit_callbacks
):
    # given: vendor A has 5 due jobs, vendor B (same agent process) 1, and a cap of 2
    monkeypatch.setattr(erp_sync_sweep_module, "SWEEP_VENDOR_BATCH", 2)
    other = VendorFactory()
    registered = agent_register(vendor=other, agent_url=agent.server.url, erp_type="convex")
    agent.credentials_add(secret=registered.outbound_secret, callback_token=registered.token)
    vendor_a = ErpAgent.objects.exclude(vendor=other).get().vendor
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=False):
        for n, vendor in enumerate([vendor_a] * 5 + [other]):
            order = Order.objects.create(
                vendor=vendor, order_number=f"F-{n}", status="paid", confirmed_at=now
            )
            erp_sync_job_create(order_id=order.pk, operation="order.create")

    report = erp_sync_sweep()

    # then: two of A's and B's one went out
    assert report.queued == 3
    done = ErpSyncJob.objects.filter(status=S.COMPLETED)
    assert done.filter(vendor=other).count() == 1
    assert done.filter(vendor=vendor_a).count() == 2


def test_erp_sync_admin_history_shows_the_latest_fifty_events(agent, place, admin_client):
    job = job_of(place())
    ErpSyncEvent.objects.bulk_create(
        ErpSyncEvent(job=job, kind=ErpSyncEvent.Kind.WAITING, message=f"w{n}") for n in range(80)
    )

    page = admin_client.get(f"/admin/erp_mapping/erpsyncjob/{job.pk}/change/").content.decode()

    assert 'name="events-TOTAL_FORMS" value="50"' in page
    assert "w79" in page
    assert "w29" not in page


# --- 10. first deploy -------------------------------------------------------------------------


def test_erp_sync_backfill_skips_orders_confirmed_before_the_first_job(
    agent, place, django_capture_on_commit_callbacks
):
    # given: orders confirmed before the sync existed (no job at all)
    old = place()
    ErpSyncJob.objects.all().delete()

    # then: the sweep does not send them
    assert erp_sync_sweep().created == 0
    assert not ErpSyncJob.objects.filter(order=old).exists()

    # when: the sync makes its first job, and a later order's listener failed
    place()
    missed = place()
    ErpSyncJob.objects.filter(order=missed).delete()

    # then: only the later order is backfilled
    assert erp_sync_sweep().created == 1
    assert ErpSyncJob.objects.filter(order=missed).exists()
    assert not ErpSyncJob.objects.filter(order=old).exists()


def test_erp_sync_an_agent_without_outbound_secret_alerts_and_shows_in_readiness(
    agent, place, caplog
):
    ErpAgent.objects.update(outbound_secret="")
    order = place()

    job = job_of(order)
    assert (job.status, job.attempts, job.wait_reason) == (S.PENDING, 0, "no_outbound_secret")
    assert job.next_attempt_at is None
    erp_sync_sweep()
    erp_sync_sweep()
    raised = [r for r in caplog.records if "alert.raised" in r.getMessage()]
    assert len(raised) == 1
    assert "outbound secret" in raised[0].getMessage()
    vendor_id = str(agent.registered.agent.vendor_id)
    detail = APIClient().get("/health/ready").json()["details"]["erp_agents_unsigned"]
    assert detail == {"status": "action_needed", "vendors": [vendor_id]}
    assert orders_calls(agent) == []


# --- 11. the callbacks' throttle --------------------------------------------------------------


def agent_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_erp_sync_callbacks_have_their_own_rate_and_spare_the_heartbeats(agent, settings):
    settings.API_KEY_RATE_LIMIT_PER_MINUTE = 2
    settings.ERP_AGENT_CALLBACK_RATE_PER_MINUTE = 5
    client = agent_api(agent.registered.token)
    body = {"job_id": 10**9, "status": "failed"}

    answers = [client.post(CALLBACK, body, format="json").status_code for _ in range(6)]
    beats = [
        client.post("/api/v1/erp/agents/heartbeat/", {}, format="json").status_code
        for _ in range(3)
    ]

    assert answers == [404] * 5 + [429]
    assert beats[:2] == [200, 200]
    assert beats[2] == 429


# --- 12. a conflicting answer in the send -----------------------------------------------------


def test_erp_sync_send_records_a_conflicting_answer_and_returns_quietly(agent, place):
    # given: a job claimed by a worker whose callback (another reference) completes it first
    agent.credentials.clear()
    order = place()
    job = job_of(order)
    agent.credentials_add(
        secret=agent.registered.outbound_secret, callback_token=agent.registered.token
    )
    ErpSyncJob.objects.filter(pk=job.pk).update(next_attempt_at=None)
    lease = erp_sync_send_module._claim(job.pk, now=timezone.now())
    claimed = ErpSyncJob.objects.select_related("order").get(pk=job.pk)
    erp_sync_callback(
        agent=agent.registered.agent, job_id=job.pk, status="completed", erp_reference="SO-X"
    )

    # when: the worker's call is answered with the ERP's reference
    outcome = erp_sync_send_module._send_claimed(claimed, lease)

    # then: no exception; the conflict is recorded and the first reference kept
    assert outcome == "conflict"
    job.refresh_from_db()
    assert (job.status, job.erp_reference) == (S.COMPLETED, "SO-X")
    assert job.events.filter(kind=ErpSyncEvent.Kind.CONFLICT).count() == 1


def test_erp_sync_a_cancel_refused_by_the_agent_is_dead_not_waiting(
    agent, place, django_capture_on_commit_callbacks
):
    # the agent answers 422 for a document it does not know (404 is for a wrong URL)
    order = place()
    agent.documents.clear()
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order=order, actor=API)
    cancel = job_of(order, "order.cancel")
    assert (cancel.status, cancel.http_status) == (S.DEAD, 422)


def test_erp_sync_a_dead_job_retried_unchanged_keeps_its_key_and_the_erp_one_document(
    agent, place, sync_settings, django_capture_on_commit_callbacks
):
    # given: the agent took the order (202) but its callbacks never came, until the job died
    sync_settings.ERP_SYNC_MAX_ATTEMPTS = 1
    agent.orders_configure(mode="async", never_call_back=True)
    order = place()
    job = job_of(order)
    assert job.status == S.AWAITING_CALLBACK
    assert agent.documents_created() == 1
    first_key = job.idempotency_key
    Job = type(job)
    Job.objects.filter(pk=job.pk).update(status=S.DEAD, attempts=1)
    job.refresh_from_db()

    # when: staff retry it without changing the order (the agent answers at once now)
    agent.orders_configure(mode="sync", never_call_back=False)
    with django_capture_on_commit_callbacks(execute=True):
        erp_sync_job_retry(job_id=job.pk, actor="user:ops")

    # then: the same key went out, and the agent answered with the document it had made
    job.refresh_from_db()
    assert job.idempotency_key == first_key
    assert (job.status, job.erp_reference) == (S.COMPLETED, "SO-000001")
    assert agent.documents_created() == 1
    first, second = orders_calls(agent)
    assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
