"""The reconciliation's command, tasks, schedule and console."""

import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from erp_mapping.models import ErpAgent, ReconciliationEvent
from erp_mapping.services.agents import agent_register
from erp_mapping.tasks.reconcile import reconcile_all, reconcile_vendor
from tests.erp_mapping.reconcile_helpers import catalogue, erp_from_local, on_hand, stock
from tests.inventory.factories import VendorFactory

Status = ReconciliationEvent.Status


@pytest.fixture
def drifted(vendor, warehouse, agent_erp):
    products = catalogue(vendor, [f"C-{i:03d}" for i in range(300)])
    stock((product, warehouse, 3) for product in products.values())
    erp_from_local(agent_erp, vendor)
    for i in (5, 150, 299):
        agent_erp.stock_set(f"C-{i:03d}", "MAIN", 8)
    return agent_erp


@pytest.mark.django_db
def test_erp_reconcile_command_prints_the_figures(vendor, drifted):
    out = io.StringIO()

    call_command("erp_reconcile", "--vendor", str(vendor.pk), stdout=out)

    text = out.getvalue()
    assert "completed" in text
    assert "drift found      3" in text
    assert "drift fixed      3" in text
    assert "% of the rows here)" in text
    assert on_hand(vendor, "C-150", "MAIN") == 8


@pytest.mark.django_db
def test_erp_reconcile_command_exits_1_when_the_run_fails(vendor, drifted):
    drifted.server.stop()

    with pytest.raises(CommandError) as caught:
        call_command("erp_reconcile", stdout=io.StringIO())

    assert caught.value.returncode == 1
    event = ReconciliationEvent.objects.get()
    assert (event.trigger, event.error_code) == ("command", "agent_unreachable")


@pytest.mark.django_db
def test_erp_reconcile_command_without_an_agent_says_so():
    with pytest.raises(CommandError, match="erp_agent_missing"):
        call_command("erp_reconcile", "--vendor", str(VendorFactory().pk))


@pytest.mark.django_db
def test_reconcile_all_runs_only_vendors_with_an_online_agent(vendor, drifted):
    # given a second vendor whose agent is offline
    other = VendorFactory()
    agent_register(vendor=other, agent_url="http://127.0.0.1:9", erp_type="convex")
    assert ErpAgent.objects.get(vendor=other).status == ErpAgent.Status.OFFLINE

    # when (tasks run inline in the tests)
    enqueued = reconcile_all.delay().get()

    # then
    assert enqueued == 1
    event = ReconciliationEvent.objects.get()
    assert (event.vendor_id, event.trigger, event.drift_fixed) == (vendor.pk, "schedule", 3)


@pytest.mark.django_db
def test_reconcile_vendor_returns_quietly_without_vendor_or_agent():
    assert reconcile_vendor("8f1c6f1e-0000-4000-8000-000000000000") is None
    assert reconcile_vendor(str(VendorFactory().pk)) is None
    assert not ReconciliationEvent.objects.exists()


@pytest.mark.django_db
def test_reconcile_schedule_follows_its_setting(settings):
    from erp_mapping.schedules import SCHEDULES

    [schedule] = [s for s in SCHEDULES if s.task == "erp_mapping.reconcile_all"]
    settings.ERP_RECONCILE_INTERVAL_SECONDS = 1800

    assert schedule.interval_seconds == 1800


@pytest.fixture
def agent_staff(db) -> Client:
    """Staff who may view events and agents and change agents (which reconciling needs)."""
    user = User.objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_reconciliationevent", "view_erpagent", "change_erpagent"]
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_event_list_and_detail_are_read_only(agent_staff, vendor):
    event = ReconciliationEvent.objects.create(
        vendor=vendor,
        started_at=timezone.now(),
        status=Status.COMPLETED,
        rows_fetched=40,
        details={"drift": [{"sku": "X-1", "ours": "1.000", "erp": "2.000"}]},
    )

    listing = agent_staff.get(reverse("admin:erp_mapping_reconciliationevent_changelist"))
    detail = agent_staff.get(
        reverse("admin:erp_mapping_reconciliationevent_change", args=[event.pk])
    )

    assert listing.status_code == 200
    assert detail.status_code == 200
    assert b"X-1" in detail.content
    assert b'name="_save"' not in detail.content
    assert agent_staff.get(reverse("admin:erp_mapping_reconciliationevent_add")).status_code == 403


@pytest.mark.django_db
def test_admin_reconcile_now_on_the_agent_runs_a_reconciliation(agent_staff, vendor, drifted):
    response = agent_staff.post(
        reverse("admin:erp_mapping_erpagent_changelist"),
        {"action": "reconcile_stock", "_selected_action": [drifted.agent.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"Reconciliation queued for 1 vendor" in response.content
    event = ReconciliationEvent.objects.get()
    assert (event.trigger, event.status, event.drift_fixed) == ("admin", Status.COMPLETED, 3)
    assert on_hand(vendor, "C-005", "MAIN") == Decimal(8)


@pytest.mark.django_db
def test_admin_reconcile_now_needs_change_on_the_agent(agent_staff, vendor, drifted):
    # given staff who may only view
    user = User.objects.get(username="ops")
    user.user_permissions.remove(Permission.objects.get(codename="change_erpagent"))
    event = ReconciliationEvent.objects.create(
        vendor=vendor, started_at=timezone.now(), status=Status.COMPLETED
    )

    # when they forge the event list's action
    agent_staff.post(
        reverse("admin:erp_mapping_reconciliationevent_changelist"),
        {"action": "reconcile_again", "_selected_action": [event.pk]},
    )

    # then nothing ran
    assert ReconciliationEvent.objects.count() == 1
    assert on_hand(vendor, "C-005", "MAIN") == 3
