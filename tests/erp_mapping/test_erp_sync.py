"""Orders to the ERP: jobs, sends, callbacks, retries, dead letters, the sweep, cancels."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import DeadLetter
from core.sandbox import Fault
from core.services import dead_letter_retry
from erp_mapping.agent_server.orders import signature_valid
from erp_mapping.clients.breaker import vendor_breaker
from erp_mapping.models import ErpSyncEvent, ErpSyncJob
from erp_mapping.services.agents import agent_register
from erp_mapping.services.erp_sync import (
    erp_sync_job_create,
    erp_sync_job_send_now,
    erp_sync_send,
    erp_sync_sweep,
)
from orders.services import order_cancel
from tests.erp_mapping.sync_support import API, job_of, orders_calls
from tests.inventory.factories import VendorFactory

S = ErpSyncJob.Status
CALLBACK = "/api/v1/erp/agents/callback/"

pytestmark = pytest.mark.django_db


def later(seconds: float = 3600):
    return timezone.now() + timedelta(seconds=seconds)


def sweep_when_due(*jobs: ErpSyncJob):
    """Let the jobs' waits run out (as time would), then run the sweep."""
    past = timezone.now() - timedelta(seconds=1)
    ErpSyncJob.objects.filter(pk__in=[job.pk for job in jobs]).update(next_attempt_at=past)
    return erp_sync_sweep()


def agent_api(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_erp_sync_confirmed_order_is_sent_once_signed_and_completed(agent, place):
    # when: an order is confirmed (its hooks run on commit)
    order = place(2)

    # then: one job, sent once with its UUID key, signed with the agent's secret
    job = job_of(order)
    assert job.status == S.COMPLETED
    assert job.completed_via == ErpSyncJob.CompletedVia.ANSWER
    assert (job.attempts, job.erp_reference, job.erp_document_id) == (1, "SO-000001", "DOC-000001")
    [call] = orders_calls(agent)
    assert call.headers["Idempotency-Key"] == str(job.idempotency_key)
    assert json.loads(call.body)["job_id"] == str(job.pk)
    secret = agent.registered.outbound_secret
    assert signature_valid(secret, call.headers["X-Syncstore-Signature"], call.body)
    sent = json.loads(call.body)
    assert sent["operation"] == "order.create"
    assert sent["order"]["order_number"] == order.order_number
    assert sent["order"]["lines"][0]["quantity"] == "2.000"
    assert sent["order"]["lines"][0]["warehouse_code"] == "MAIN"
    assert sent["order"]["customer"] == {"name": "Ann"}
    # and: the order carries its ERP fields
    order.refresh_from_db()
    assert (order.erp_reference, order.erp_document_id, order.erp_status) == (
        "SO-000001",
        "DOC-000001",
        "created",
    )
    assert order.erp_synced_at is not None
    assert order.erp_sync_error == ""
    # and: the hook again, or a second send, changes nothing
    assert erp_sync_job_create(order_id=order.pk, operation="order.create").pk == job.pk
    assert erp_sync_send(job_id=job.pk).outcome == "skipped"
    assert ErpSyncJob.objects.count() == 1
    assert agent.documents_created() == 1
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds == [ErpSyncEvent.Kind.CREATED, ErpSyncEvent.Kind.COMPLETED]


def test_erp_sync_accepted_then_callback_completes_exactly_once_despite_replays(agent, place):
    agent.orders_configure(mode="async")
    order = place()
    job = job_of(order)
    assert job.status == S.AWAITING_CALLBACK
    assert job.next_attempt_at > timezone.now()

    # when: the agent calls back, then sends the same callback three more times
    assert agent.callbacks_release() == [200]
    for _ in range(3):
        assert agent.callbacks_replay() == [200]

    # then: completed once, by the callback, and nothing changed after the first
    job.refresh_from_db()
    assert (job.status, job.completed_via) == (S.COMPLETED, "callback")
    assert job.erp_reference == "SO-000001"
    completed = job.events.filter(kind=ErpSyncEvent.Kind.COMPLETED)
    assert completed.count() == 1
    order.refresh_from_db()
    assert order.erp_reference == "SO-000001"
    assert agent.documents_created() == 1
    answer = agent_api(agent.registered.token).post(
        CALLBACK,
        {"job_id": job.pk, "status": "completed", "erp_reference": "SO-000001"},
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "job_id": job.pk,
        "status": "completed",
        "erp_reference": "SO-000001",
        "changed": False,
    }


def test_erp_sync_callback_with_another_reference_is_refused_and_the_first_kept(agent, place):
    order = place()
    job = job_of(order)

    answer = agent_api(agent.registered.token).post(
        CALLBACK,
        {"job_id": job.pk, "status": "completed", "erp_reference": "SO-999"},
        format="json",
    )

    assert answer.status_code == 409
    assert answer.json()["code"] == "erp_reference_conflict"
    job.refresh_from_db()
    assert job.erp_reference == "SO-000001"
    assert job.events.filter(kind=ErpSyncEvent.Kind.CONFLICT).count() == 1
    failed = agent_api(agent.registered.token).post(
        CALLBACK, {"job_id": job.pk, "status": "failed", "error": "late"}, format="json"
    )
    assert failed.status_code == 409
    assert failed.json()["code"] == "erp_sync_job_completed"


def test_erp_sync_callback_for_another_vendors_job_is_404(agent, place):
    order = place()
    job = job_of(order)
    other = agent_register(vendor=VendorFactory(), agent_url="http://127.0.0.1:1", erp_type="x")

    answer = agent_api(other.token).post(
        CALLBACK, {"job_id": job.pk, "status": "completed", "erp_reference": "X-1"}, format="json"
    )

    assert answer.status_code == 404
    assert set(answer.json()) == {"code", "message", "details", "correlation_id"}
    assert answer.json()["code"] == "erp_sync_job_not_found"
    job.refresh_from_db()
    assert job.erp_reference == "SO-000001"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"job_id": "abc", "status": "completed", "erp_reference": "R"},
        {"job_id": 1, "status": "done", "erp_reference": "R"},
        {"job_id": 1, "status": "completed"},
        {"job_id": 1, "status": "completed", "erp_reference": "   "},
        {"job_id": 1, "status": "completed", "erp_reference": "R" * 101},
        {"job_id": -5, "status": "failed"},
        {"job_id": 2**70, "status": "failed"},
        {"job_id": [1], "status": "failed"},
        {"job_id": 1, "status": None},
        ["not", "an", "object"],
    ],
)
def test_erp_sync_callback_refuses_hostile_bodies_with_json_errors(agent, body):
    answer = agent_api(agent.registered.token).post(CALLBACK, body, format="json")
    assert answer.status_code == 400
    assert answer.json()["code"] in ("validation_error", "invalid_request", "parse_error")
    assert set(answer.json()) == {"code", "message", "details", "correlation_id"}


def test_erp_sync_callback_refuses_a_missing_or_wrong_token(agent):
    body = {"job_id": 1, "status": "failed"}
    assert APIClient().post(CALLBACK, body, format="json").status_code == 401
    wrong = agent_api("ssa_" + "x" * 43).post(CALLBACK, body, format="json")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_agent_token")
    raw = agent_api(agent.registered.token).post(
        CALLBACK, "{not json", content_type="application/json"
    )
    assert raw.status_code == 400


def test_erp_sync_failed_callback_retries_and_the_resend_completes(agent, place):
    agent.orders_configure(mode="async", fail_callbacks=1)
    order = place()
    job = job_of(order)

    assert agent.callbacks_release() == [200]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.FAILED, 1)
    assert "the ERP refused" in job.last_error
    # a replay of the failure does not count twice
    assert agent.callbacks_replay() == [200]
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.FAILED, 1)

    # when: the retry is due, the same key goes out again; the agent answers what it has
    sweep_when_due(job)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.erp_reference) == (S.COMPLETED, 2, "SO-000001")
    assert agent.documents_created() == 1


def test_erp_sync_callback_timeout_resends_with_the_same_key_and_one_document(agent, place):
    # given: the agent accepts and never calls back
    agent.orders_configure(mode="async", never_call_back=True)
    order = place()
    job = job_of(order)
    assert job.status == S.AWAITING_CALLBACK

    # when: the sweep runs before the timeout, then after it
    assert erp_sync_sweep().callback_timeouts == 0
    assert job.next_attempt_at - job.sent_at == timedelta(seconds=sync_timeout_seconds())
    report = sweep_when_due(job)

    # then: sent again with the same key; the agent answers with its one document
    assert report.callback_timeouts == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.erp_reference) == (S.COMPLETED, 2, "SO-000001")
    keys = [call.headers["Idempotency-Key"] for call in orders_calls(agent)]
    assert keys == [str(job.idempotency_key)] * 2
    assert agent.documents_created() == 1
    assert job.events.filter(kind=ErpSyncEvent.Kind.CALLBACK_TIMEOUT).count() == 1


def sync_timeout_seconds() -> int:
    from django.conf import settings

    return settings.ERP_CALLBACK_TIMEOUT


@pytest.mark.parametrize("status", [401, 403, 404])
def test_erp_sync_an_agent_setup_refusal_waits_opens_the_circuit_and_alerts_once(
    agent, place, sync_settings, status, caplog
):
    # given: the agent refuses every call as a whole (a secret it lacks, a wrong URL)
    sync_settings.ERP_BREAKER_FAIL_MAX = 2
    sync_settings.ERP_BREAKER_RESET_SECONDS = 60  # no trial while the test runs, however slow
    agent.inject(Fault(status=status, count=10))

    # when: three orders come in
    orders = [place() for _ in range(3)]

    # then: no job is dead and none used an attempt; the refusals opened the circuit, so
    # the third job waits for the circuit without a call
    jobs = [job_of(order) for order in orders]
    assert [(j.status, j.attempts) for j in jobs] == [(S.PENDING, 0)] * 3
    assert [j.wait_reason for j in jobs] == ["agent_config", "agent_config", "circuit_open"]
    assert len(orders_calls(agent)) == 2
    assert vendor_breaker(agent.registered.agent.vendor_id).state().state == "open"
    assert not DeadLetter.objects.exists()
    # and: one alert for the vendor (two refusals), saying what to fix
    raised = [r for r in caplog.records if "alert.raised" in r.getMessage()]
    assert len(raised) == 1
    assert "ERP agent refuses" in raised[0].getMessage()


def test_erp_sync_a_wrong_secret_waits_and_reregistration_sends_it_at_once(
    agent, place, vendor, django_capture_on_commit_callbacks
):
    # given: the agent knows another secret than SyncStore's
    agent.credentials.clear()
    agent.credentials_add(secret="sso_not-the-right-one", callback_token="x")

    order = place()

    job = job_of(order)
    assert (job.status, job.attempts, job.http_status) == (S.PENDING, 0, 401)
    assert job.wait_reason == "agent_config"
    assert job.next_attempt_at > timezone.now()
    assert agent.documents_created() == 0
    assert not DeadLetter.objects.exists()
    order.refresh_from_db()
    assert order.erp_sync_error == ""  # nothing is wrong with the order

    # when: the agent is registered again and given the new secret
    again = agent_register(vendor=vendor, agent_url=f"{agent.server.url}/agent", erp_type="x")
    agent.credentials_add(secret=again.outbound_secret, callback_token=again.token)

    # then: the waiting job is due now; the next sweep sends it
    job.refresh_from_db()
    assert job.next_attempt_at <= timezone.now()
    assert erp_sync_sweep().queued == 1
    assert job_of(order).status == S.COMPLETED


def test_erp_sync_reregistration_rotates_the_outbound_secret(
    agent, place, vendor, django_capture_on_commit_callbacks
):
    first = agent.registered.outbound_secret
    again = agent_register(vendor=vendor, agent_url=agent.server.url, erp_type="convex")
    assert again.outbound_secret.startswith("sso_")
    assert again.outbound_secret != first
    # the secret is stored encrypted
    with connection.cursor() as cursor:
        cursor.execute("SELECT outbound_secret FROM erp_mapping_erpagent")
        [(stored,)] = cursor.fetchall()
    assert again.outbound_secret not in stored
    # calls are signed with the new secret: an agent knowing only the old one refuses them
    order = place()
    assert (job_of(order).status, job_of(order).http_status) == (S.PENDING, 401)
    agent.credentials_replace(
        old_secret=first, secret=again.outbound_secret, callback_token=again.token
    )
    with django_capture_on_commit_callbacks(execute=True):
        erp_sync_job_send_now(job_id=job_of(order).pk, actor="test")
    assert job_of(order).status == S.COMPLETED


def test_erp_sync_retries_with_backoff_then_dead_then_console_retry_completes(
    agent, place, sync_settings, django_capture_on_commit_callbacks
):
    sync_settings.ERP_SYNC_MAX_ATTEMPTS = 3
    sync_settings.ERP_SYNC_RETRY_BASE_SECONDS = 30
    sync_settings.ERP_SYNC_RETRY_MAX_SECONDS = 1000
    agent.inject(Fault(status=502, count=3))

    order = place()
    job = job_of(order)
    assert (job.status, job.attempts, job.http_status) == (S.FAILED, 1, 502)
    delay = (job.next_attempt_at - job.updated_at).total_seconds()
    assert 15 <= delay <= 30.1  # full jitter between half and all of base * 2**0
    # not due yet: the sweep leaves it alone
    assert erp_sync_sweep().queued == 0
    sweep_when_due(job)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.FAILED, 2)
    delay = (job.next_attempt_at - job.updated_at).total_seconds()
    assert 30 <= delay <= 60.1
    sweep_when_due(job)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.DEAD, 3)
    letter = DeadLetter.objects.get(task_name="erp_mapping.erp_sync_send", status="open")
    assert "gave up after 3 attempts" in letter.error_message

    # when: staff retry the dead letter from the console (the agent is well again)
    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="user:ops")

    # then: the job is revived, sent and completed, and its dead letter resolved
    job.refresh_from_db()
    assert (job.status, job.attempts, job.erp_reference) == (S.COMPLETED, 1, "SO-000001")
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RESOLVED
    assert agent.documents_created() == 1
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds.count(ErpSyncEvent.Kind.FAILED) == 2
    assert ErpSyncEvent.Kind.RETRIED in kinds


def test_erp_sync_a_refusal_is_dead_at_once_without_retries(agent, place):
    agent.inject(Fault(status=422, count=1, body='{"error": "unknown customer"}'))

    order = place()

    job = job_of(order)
    assert (job.status, job.attempts, job.http_status) == (S.DEAD, 1, 422)
    assert "unknown customer" in job.last_error
    assert DeadLetter.objects.filter(kwargs__job_id=job.pk).count() == 1


def test_erp_sync_stuck_processing_is_requeued_by_the_sweep_only_past_its_lease(agent, place):
    # given: a job whose worker died mid-send (processing, its attempt counted)
    agent.credentials.clear()  # the first send is refused: then make it look stuck
    order = place()
    job = job_of(order)
    ErpSyncJob.objects.filter(pk=job.pk).update(
        status=S.PROCESSING, locked_until=later(60), attempts=1
    )
    agent.credentials_add(
        secret=agent.registered.outbound_secret, callback_token=agent.registered.token
    )

    # when: the sweep runs while the lease holds, then after it
    assert erp_sync_sweep().stuck == 0
    assert erp_sync_send(job_id=job.pk).outcome == "skipped"  # another worker holds it
    ErpSyncJob.objects.filter(pk=job.pk).update(locked_until=timezone.now())
    report = erp_sync_sweep()

    # then: queued again and completed
    assert report.stuck == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.COMPLETED, 2)
    assert job.events.filter(kind=ErpSyncEvent.Kind.STUCK).count() == 1


def test_erp_sync_vendor_without_an_agent_waits_without_attempts(vendor, place, sync_settings):
    order = place()
    job = job_of(order)
    assert (job.status, job.attempts, job.next_attempt_at) == (S.PENDING, 0, None)
    assert erp_sync_sweep().queued == 0  # nothing to send it to
    # sent anyway (staff's "send now"), it goes back to waiting without using an attempt
    assert erp_sync_send(job_id=job.pk).outcome == "waiting"
    job.refresh_from_db()
    assert (job.status, job.attempts, job.next_attempt_at) == (S.PENDING, 0, None)
    assert "no ERP agent" in job.last_error

    from core.sandbox import SandboxServer
    from erp_mapping.agent_server import AgentServer

    app = AgentServer()
    with SandboxServer(app) as server:
        registered = agent_register(vendor=vendor, agent_url=server.url, erp_type="convex")
        app.credentials_add(secret=registered.outbound_secret, callback_token=registered.token)
        assert erp_sync_sweep().queued == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.COMPLETED, 1)


def test_erp_sync_cancel_of_a_synced_order_cancels_its_document(
    agent, place, django_capture_on_commit_callbacks
):
    order = place()
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order=order, actor=API)

    cancel = job_of(order, "order.cancel")
    assert cancel.status == S.COMPLETED
    assert cancel.payload["erp_document_id"] == "DOC-000001"
    assert agent.documents[0].status == "cancelled"
    order.refresh_from_db()
    assert (order.erp_status, order.erp_reference) == ("cancelled", "SO-000001")
    assert agent.documents_created() == 1


def test_erp_sync_cancel_waits_for_its_create_then_follows(
    agent, place, django_capture_on_commit_callbacks
):
    # given: the create is accepted but not yet confirmed by the agent
    agent.orders_configure(mode="async")
    order = place()
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order=order, actor=API)
    cancel = job_of(order, "order.cancel")
    assert (cancel.status, cancel.attempts) == (S.PENDING, 0)
    assert cancel.wait_reason == "create_pending"
    assert cancel.next_attempt_at is None  # no timed wait: the create's completion sends it
    assert len(orders_calls(agent)) == 1  # only the create went out

    # when: the create's callback arrives
    agent.orders_configure(mode="sync")
    with django_capture_on_commit_callbacks(execute=True):
        assert agent.callbacks_release() == [200]

    # then: the cancel follows at once
    cancel.refresh_from_db()
    assert cancel.status == S.COMPLETED
    assert agent.documents[0].status == "cancelled"


def test_erp_sync_an_order_never_sent_gets_no_cancel_job(place, vendor, sync_settings):
    order = place()
    ErpSyncJob.objects.filter(order=order).delete()
    assert erp_sync_job_create(order_id=order.pk, operation="order.cancel") is None


def test_erp_sync_sweep_creates_jobs_a_failed_listener_missed(agent, place):
    place()  # the first job: the sync exists from here on
    order = place()
    ErpSyncJob.objects.filter(order=order).delete()

    report = erp_sync_sweep()

    assert report.created == 1
    assert job_of(order).status == S.COMPLETED


def test_erp_sync_jobs_api_lists_and_filters(agent, place, make_client, vendor):
    done = place()
    agent.orders_configure(mode="async")
    waiting = place()
    client = make_client(("read",))

    listed = client.get("/api/v1/erp/sync-jobs/", {"status": "awaiting_callback"})

    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert (row["order_id"], row["status"]) == (waiting.pk, "awaiting_callback")
    one = client.get(f"/api/v1/erp/sync-jobs/{job_of(done).pk}/").json()
    assert (one["erp_reference"], one["order_number"]) == ("SO-000001", done.order_number)
    bad = client.get("/api/v1/erp/sync-jobs/", {"status": "nope"})
    assert bad.status_code == 400
