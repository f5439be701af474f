import hashlib
import json
import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config.celery import app
from core.models import IdempotencyRecord
from core.task_base import BaseTask
from erp_mapping.auth import agent_token_hash
from erp_mapping.models import ErpAgent
from erp_mapping.services.agents import agent_heartbeat, agent_register, agents_check_health
from erp_mapping.tasks.agents import check_agents
from tests.helpers import wait_for
from tests.inventory.factories import VendorFactory

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/erp/agents/"
HEARTBEAT = "/api/v1/erp/agents/heartbeat/"


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "correlation_id"}
    return body


def agent_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def admin(make_client) -> APIClient:
    return make_client(("admin",))


@pytest.fixture
def registered(vendor):
    return agent_register(vendor=vendor, agent_url="http://erp.local:8080", erp_type="sage")


# --- Registration ---------------------------------------------------------------------------


def test_agent_register_returns_the_token_once_and_stores_only_its_hash(admin, vendor):
    # when
    response = admin.post(
        AGENTS,
        {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local:8080", "erp_type": "sage"},
        format="json",
    )

    # then
    assert response.status_code == 201, response.content
    body = response.json()
    token = body["token"]
    assert token.startswith("ssa_")
    assert len(token) == 4 + 43
    agent = ErpAgent.objects.get(vendor=vendor)
    assert agent.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(agent.token_prefix)
    assert body["token_prefix"] == agent.token_prefix
    assert body["status"] == "offline"  # until its first heartbeat
    assert body["registered_by"] == "api_key:test client"
    stored = " ".join(str(value) for value in ErpAgent.objects.values().get().values())
    assert token not in stored
    # the list never shows the token or its hash
    listed = admin.get(AGENTS).json()["results"]
    assert [row["id"] for row in listed] == [agent.pk]
    assert "token" not in listed[0]
    assert "token_hash" not in listed[0]
    assert agent.token_hash not in str(listed)


def test_agent_reregister_rotates_the_token_and_keeps_the_row(admin, vendor):
    body = {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local:8080", "erp_type": "sage"}
    first = admin.post(AGENTS, body, format="json").json()

    again = admin.post(
        AGENTS, {**body, "agent_url": "http://erp2.local", "erp_type": "ebp"}, format="json"
    )

    assert again.status_code == 200, again.content
    second = again.json()
    assert second["id"] == first["id"]
    assert second["token"] != first["token"]
    assert (second["agent_url"], second["erp_type"]) == ("http://erp2.local", "ebp")
    assert ErpAgent.objects.count() == 1
    # the old token stops working at once, the new one works
    assert_error(agent_client(first["token"]).post(HEARTBEAT), 401, "invalid_agent_token")
    assert agent_client(second["token"]).post(HEARTBEAT).status_code == 200


def test_agent_register_with_an_idempotency_key_replays_without_rotating_the_token(admin, vendor):
    body = {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local:8080", "erp_type": "sage"}
    first = admin.post(AGENTS, body, format="json", HTTP_IDEMPOTENCY_KEY="agent-1")

    # when: the answer was lost and the client retries with the same key and body
    retry = admin.post(AGENTS, body, format="json", HTTP_IDEMPOTENCY_KEY="agent-1")

    # then: the first answer, the same token, and that token still authenticates
    assert first.status_code == 201, first.content
    assert retry.status_code == 201, retry.content
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    token = first.json()["token"]
    assert agent_client(token).post(HEARTBEAT).status_code == 200
    # the stored answer holds the token encrypted, never in clear
    stored = IdempotencyRecord.objects.get(key="agent-1")
    assert token not in json.dumps(stored.response_body)
    assert stored.response_body["token_prefix"] == first.json()["token_prefix"]


def test_agent_register_same_idempotency_key_with_another_body_answers_422(admin, vendor):
    body = {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local:8080", "erp_type": "sage"}
    first = admin.post(AGENTS, body, format="json", HTTP_IDEMPOTENCY_KEY="agent-2")

    other = admin.post(
        AGENTS, {**body, "erp_type": "ebp"}, format="json", HTTP_IDEMPOTENCY_KEY="agent-2"
    )

    assert_error(other, 422, "idempotency_key_reused")
    assert agent_client(first.json()["token"]).post(HEARTBEAT).status_code == 200
    assert ErpAgent.objects.get().erp_type == "sage"


def test_agent_register_needs_the_admin_scope(make_client, vendor):
    body = {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local", "erp_type": "sage"}
    writer = make_client(("read", "write"))

    assert_error(writer.post(AGENTS, body, format="json"), 403, "insufficient_scope")
    assert writer.get(AGENTS).status_code == 200  # listing needs `read` only
    assert not ErpAgent.objects.exists()


def test_agent_register_refuses_bad_input(admin, vendor):
    unknown = {"vendor_id": "6b1f7a8e-0000-4000-8000-000000000000"}
    good = {"agent_url": "http://erp.local", "erp_type": "sage"}

    assert_error(admin.post(AGENTS, {**good, **unknown}, format="json"), 404, "vendor_not_found")
    body = assert_error(
        admin.post(AGENTS, {"vendor_id": str(vendor.pk), "erp_type": "sage"}, format="json"),
        400,
        "validation_error",
    )
    assert "agent_url" in body["details"]
    assert not ErpAgent.objects.exists()


def test_agent_list_filters_by_status(make_client, vendor, registered):
    other = agent_register(vendor=VendorFactory(), agent_url="http://b.local", erp_type="ebp")
    agent_heartbeat(agent=other.agent)
    reader = make_client(("read",))

    online = reader.get(AGENTS, {"status": "online"}).json()["results"]

    assert [row["id"] for row in online] == [other.agent.pk]
    assert len(reader.get(AGENTS).json()["results"]) == 2


# --- Heartbeat and agent authentication ---------------------------------------------------


def test_heartbeat_with_a_good_token_marks_the_agent_online(
    registered, slack, django_capture_on_commit_callbacks
):
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client(registered.token).post(
            HEARTBEAT, {"version": "2.4.1"}, format="json"
        )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "online"
    agent = ErpAgent.objects.get()
    assert agent.status == ErpAgent.Status.ONLINE
    assert agent.agent_version == "2.4.1"
    assert agent.last_heartbeat_at >= before
    assert body["server_time"] == agent.last_heartbeat_at.isoformat().replace("+00:00", "Z")
    assert slack.messages == []  # a first heartbeat is no recovery
    # the body is optional; the version stays as it was
    assert agent_client(registered.token).post(HEARTBEAT).status_code == 200
    assert ErpAgent.objects.get().agent_version == "2.4.1"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer ssa_not-a-real-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "invalid_agent_token"),
        ("Bearer abc", "invalid_agent_token"),
        ("Bearer ", "invalid_agent_token"),
    ],
)
def test_heartbeat_with_a_bad_or_missing_token_answers_401(registered, authorization, code):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.post(HEARTBEAT)

    assert_error(response, 401, code)
    assert response["WWW-Authenticate"] == "Bearer"
    assert ErpAgent.objects.get().last_heartbeat_at is None


def test_agent_endpoints_take_agent_tokens_only(api, registered):
    # an API key is not an agent token, and an agent token is not an API key
    assert_error(api.post(HEARTBEAT), 401, "not_authenticated")
    assert_error(agent_client(registered.token).get("/api/v1/products/"), 401, "not_authenticated")


def test_the_token_never_reaches_the_logs(admin, vendor, log_lines):
    body = {"vendor_id": str(vendor.pk), "agent_url": "http://erp.local", "erp_type": "sage"}
    token = admin.post(AGENTS, body, format="json").json()["token"]
    agent_client(token).post(HEARTBEAT)
    agent_client(token + "x").post(HEARTBEAT)

    lines = log_lines()
    assert any(line["event"] == "erp_agent.registered" for line in lines)
    assert token[8:] not in str(lines)


@pytest.fixture
def one_window():
    """Start where the one-minute throttle window cannot roll over during the test."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


@override_settings(API_KEY_RATE_LIMIT_PER_MINUTE=2)
def test_agents_are_throttled_per_agent(registered, one_window):
    other = agent_register(vendor=VendorFactory(), agent_url="http://b.local", erp_type="ebp")
    client = agent_client(registered.token)

    statuses = [client.post(HEARTBEAT).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    response = client.post(HEARTBEAT)
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert agent_client(other.token).post(HEARTBEAT).status_code == 200


# --- Health ---------------------------------------------------------------------------------


@pytest.fixture
def online(registered):
    """The agent, online, with its last heartbeat at `t0`."""
    t0 = timezone.now() - timedelta(hours=1)
    agent_heartbeat(agent=registered.agent, now=t0)
    return registered.agent, t0


def status_of(agent: ErpAgent) -> str:
    return ErpAgent.objects.get(pk=agent.pk).status


def test_health_marks_silent_agents_degraded_at_2_and_offline_at_10_minutes(
    online, slack, django_capture_on_commit_callbacks
):
    agent, t0 = online

    def check(seconds: int) -> str:
        with django_capture_on_commit_callbacks(execute=True):
            agents_check_health(now=t0 + timedelta(seconds=seconds))
        return status_of(agent)

    assert check(119) == "online"
    assert check(120) == "degraded"
    assert check(599) == "degraded"
    assert slack.messages == []
    assert check(600) == "offline"
    [alert] = slack.messages
    assert alert["text"].startswith("ERP agent offline: The sage agent of Default vendor")
    # a later check changes nothing and alerts no more
    assert check(900) == "offline"
    assert len(slack.messages) == 1


def test_health_takes_an_agent_silent_for_10_minutes_straight_offline(
    online, slack, django_capture_on_commit_callbacks
):
    agent, t0 = online

    with django_capture_on_commit_callbacks(execute=True):
        health = agents_check_health(now=t0 + timedelta(minutes=11))

    assert [a.pk for a in health.offline] == [agent.pk]
    assert health.degraded == []
    assert status_of(agent) == "offline"
    assert len(slack.messages) == 1


def test_a_heartbeat_brings_an_offline_agent_back_online_with_an_alert(
    registered, online, slack, django_capture_on_commit_callbacks
):
    agent, t0 = online
    with django_capture_on_commit_callbacks(execute=True):
        agents_check_health(now=t0 + timedelta(minutes=10))

    with django_capture_on_commit_callbacks(execute=True):
        response = agent_client(registered.token).post(HEARTBEAT)

    assert response.json()["status"] == "online"
    assert status_of(agent) == "online"
    assert [m["text"].split(":")[0] for m in slack.messages] == [
        "ERP agent offline",
        "ERP agent back online",
    ]
    # a degraded agent recovers silently
    with django_capture_on_commit_callbacks(execute=True):
        agents_check_health(now=timezone.now() + timedelta(minutes=3))
        assert status_of(agent) == "degraded"
        agent_heartbeat(agent=agent)
    assert status_of(agent) == "online"
    assert len(slack.messages) == 2


def test_health_leaves_registered_agents_that_never_called_alone(registered, slack):
    assert status_of(registered.agent) == "offline"

    health = agents_check_health(now=timezone.now() + timedelta(days=1))

    assert (health.degraded, health.offline) == ([], [])
    assert slack.messages == []


def test_check_agents_task_runs_the_health_check(online):
    agent, _ = online  # silent for an hour

    assert isinstance(app.tasks["erp_mapping.check_agents"], BaseTask)  # dead-letters failures
    assert check_agents.delay().get() == {"degraded": 0, "offline": 1}
    assert status_of(agent) == "offline"
    assert check_agents.delay().get() == {"degraded": 0, "offline": 0}


# --- Console --------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_lists_agents_and_filters_by_status(staff, registered):
    changelist = reverse("admin:erp_mapping_erpagent_changelist")

    page = staff.get(changelist).content.decode()
    assert registered.agent.token_prefix in page
    assert registered.agent.token_hash not in page
    assert registered.token not in page
    online = staff.get(changelist, {"status__exact": "online"}).content.decode()
    assert registered.agent.token_prefix not in online
    change = staff.get(reverse("admin:erp_mapping_erpagent_change", args=[registered.agent.pk]))
    assert change.status_code == 200
    assert registered.agent.token_hash not in change.content.decode()


def test_admin_registers_an_agent_and_shows_the_token_once(staff, vendor):
    response = staff.post(
        reverse("admin:erp_mapping_erpagent_add"),
        {"vendor": str(vendor.pk), "agent_url": "https://erp.local", "erp_type": "sage"},
        follow=True,
    )

    assert response.status_code == 200
    token = re.search(r"id='new-agent-token'>([^<]+)<", response.content.decode()).group(1)
    agent = ErpAgent.objects.get()
    assert agent.token_hash == agent_token_hash(token)
    assert agent.registered_by == "user:ops"
    change = staff.get(reverse("admin:erp_mapping_erpagent_change", args=[agent.pk]))
    assert token not in change.content.decode()


def test_admin_rotates_tokens(staff, registered):
    response = staff.post(
        reverse("admin:erp_mapping_erpagent_changelist"),
        {"action": "rotate_tokens", "_selected_action": [registered.agent.pk]},
        follow=True,
    )

    token = re.search(r"class='new-agent-token'>([^<]+)<", response.content.decode()).group(1)
    assert ErpAgent.objects.get().token_hash == agent_token_hash(token)
    assert_error(agent_client(registered.token).post(HEARTBEAT), 401, "invalid_agent_token")
    assert agent_client(token).post(HEARTBEAT).status_code == 200


@pytest.mark.django_db
def test_agent_register_accepts_on_premise_hosts_and_refuses_other_schemes(make_client, vendor):
    admin = make_client(("admin",))
    body = {"vendor_id": str(vendor.pk), "erp_type": "sage"}

    ok = admin.post("/api/v1/erp/agents/", {**body, "agent_url": "http://sage01:8080"}, "json")
    bad = admin.post("/api/v1/erp/agents/", {**body, "agent_url": "ftp://sage01"}, "json")

    assert ok.status_code == 201
    assert ErpAgent.objects.get().agent_url == "http://sage01:8080"
    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")
    assert "agent_url" in bad.json()["details"]


@pytest.mark.django_db
def test_agent_second_outage_within_the_suppression_window_alerts_again(
    vendor, slack, django_capture_on_commit_callbacks
):
    registered = agent_register(vendor=vendor, agent_url="http://erp.local:8080", erp_type="sage")
    start = timezone.now() - timedelta(minutes=50)
    agent_heartbeat(agent=registered.agent, now=start)

    with django_capture_on_commit_callbacks(execute=True):
        agents_check_health(now=start + timedelta(minutes=10))  # first outage
    with django_capture_on_commit_callbacks(execute=True):
        agent_heartbeat(agent=registered.agent, now=start + timedelta(minutes=15))
    with django_capture_on_commit_callbacks(execute=True):
        agents_check_health(now=start + timedelta(minutes=30))  # second outage

    wait_for(lambda: len(slack.messages) >= 3)
    titles = [message["text"].split(":")[0] for message in slack.messages]
    assert titles == ["ERP agent offline", "ERP agent back online", "ERP agent offline"]


def test_agent_health_check_is_routed_away_from_the_erp_queue():
    route = app.amqp.router.route
    assert route({}, "erp_mapping.check_agents")["queue"].name == "default"
    assert route({}, "erp_mapping.pull_vendor")["queue"].name == "erp"
