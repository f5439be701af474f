"""The ERP sync job console: list, detail with history, send now and retry (permissions)."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from core.sandbox import Fault
from erp_mapping.models import ErpSyncEvent, ErpSyncJob
from tests.erp_mapping.sync_support import job_of

pytestmark = pytest.mark.django_db
S = ErpSyncJob.Status
CHANGELIST = "admin:erp_mapping_erpsyncjob_changelist"


@pytest.fixture
def ops() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def test_erp_sync_admin_lists_jobs_with_their_circuit_and_shows_history(ops, agent, place):
    order = place()
    job = job_of(order)

    listed = ops.get(reverse(CHANGELIST))
    detail = ops.get(reverse("admin:erp_mapping_erpsyncjob_change", args=[job.pk]))
    agents = ops.get(reverse("admin:erp_mapping_erpagent_changelist"))

    assert listed.status_code == detail.status_code == agents.status_code == 200
    assert order.order_number in listed.content.decode()
    assert "SO-000001" in listed.content.decode()
    assert "closed" in agents.content.decode()
    assert "completed" in detail.content.decode()


def test_erp_sync_admin_retry_revives_a_dead_job_and_send_now_sends_a_waiting_one(
    ops, agent, place, django_capture_on_commit_callbacks
):
    agent.inject(Fault(status=400, count=1))
    dead = job_of(place())
    assert dead.status == S.DEAD

    with django_capture_on_commit_callbacks(execute=True):
        answer = ops.post(
            reverse(CHANGELIST), {"action": "retry_dead", "_selected_action": [dead.pk]}
        )

    assert answer.status_code == 302
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == (S.COMPLETED, 1)
    assert dead.events.filter(kind=ErpSyncEvent.Kind.RETRIED, actor="user:ops").exists()


def test_erp_sync_admin_actions_need_the_right_to_change_agents(agent, place):
    job = job_of(place())
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(viewer)

    answer = client.post(reverse(CHANGELIST), {"action": "send_now", "_selected_action": [job.pk]})

    assert answer.status_code == 200  # the action is not offered: the list is shown again
    assert not job.events.filter(kind=ErpSyncEvent.Kind.SEND_NOW).exists()
