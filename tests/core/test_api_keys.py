import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from rest_framework.test import APIClient

from core import auth
from core.auth import api_key_hash
from core.models import ApiKey
from core.services import api_key_create, api_key_revoke, api_key_update

pytestmark = pytest.mark.django_db

URL = "/api/v1/stock-levels/"


def error_code(response) -> str:
    return response.json()["code"]


def test_create_api_key_command_prints_the_key_alone_on_its_last_line():
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_key", "erp-bridge", "--scopes", "read,write", stdout=out, stderr=err)

    key = out.getvalue().strip().splitlines()[-1]
    assert key.startswith("ssk_")
    assert " " not in key
    api_key = ApiKey.objects.get(name="erp-bridge")
    assert api_key.scopes == ["read", "write"]
    assert api_key.key_hash == api_key_hash(key)
    assert key not in api_key.key_hash  # only the hash is stored
    assert api_key.prefix in key
    assert "not shown again" in err.getvalue()


def test_create_api_key_command_rejects_unknown_scope():
    with pytest.raises(CommandError, match="Unknown or missing scopes: root"):
        call_command("create_api_key", "x", "--scopes", "read,root", stdout=io.StringIO())


@pytest.mark.parametrize("header", ["HTTP_X_API_KEY", "HTTP_AUTHORIZATION"])
def test_both_key_headers_authenticate(header):
    created = api_key_create(name="c", scopes=["read"])
    value = created.key if header == "HTTP_X_API_KEY" else f"Api-Key {created.key}"

    response = APIClient().get(URL, **{header: value})

    assert response.status_code == 200
    created.api_key.refresh_from_db()
    assert created.api_key.last_used_at is not None


def test_missing_key_is_401_with_www_authenticate():
    response = APIClient().get(URL)
    assert response.status_code == 401
    assert error_code(response) == "not_authenticated"
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize("value", ["ssk_deadbeef_not-the-secret", "garbage", "ssk_", "Api-Key"])
def test_invalid_key_is_401(value):
    response = APIClient().get(URL, HTTP_X_API_KEY=value)
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_right_prefix_wrong_secret_is_401():
    created = api_key_create(name="c", scopes=["read"])
    forged = created.key[:-4] + "AAAA"
    response = APIClient().get(URL, HTTP_X_API_KEY=forged)
    assert response.status_code == 401
    assert error_code(response) == "invalid_api_key"


def test_revoked_key_is_401_at_once(api, django_capture_on_commit_callbacks):
    assert api.get(URL).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):  # the revocation commits
        api_key_revoke(api_key=api.api_key, revoked_by="admin")

    response = api.get(URL)
    assert response.status_code == 401
    assert error_code(response) == "api_key_revoked"


def test_wrong_scope_is_403(make_client, stocked):
    reader = make_client(("read",))
    response = reader.post(
        "/api/v1/stock-mutations/",
        {"sku": "A", "warehouse": "MAIN", "type": "adjust", "quantity": "1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert response.status_code == 403
    assert error_code(response) == "insufficient_scope"
    assert "'write'" in response.json()["message"]


def test_agent_scope_cannot_read_inventory(make_client):
    response = make_client(("agent",)).get(URL)
    assert response.status_code == 403
    assert error_code(response) == "insufficient_scope"


def test_admin_scope_implies_read_and_write(make_client):
    assert make_client(("admin",)).get(URL).status_code == 200


@pytest.fixture
def one_window():
    """Start where the one-minute throttle window cannot roll over during the test."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)


@override_settings(API_KEY_RATE_LIMIT_PER_MINUTE=3)
def test_throttle_answers_429_with_retry_after(api, one_window):
    statuses = [api.get(URL).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = api.get(URL)
    body = response.json()
    assert body["code"] == "throttled"
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["details"] == {"retry_after": retry_after}


@override_settings(API_KEY_RATE_LIMIT_PER_MINUTE=2)
def test_throttle_is_per_key_and_overridable(make_client, one_window):
    first, second = make_client(), make_client(rate_limit_per_minute=5)
    assert [first.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert [second.get(URL).status_code for _ in range(5)] == [200] * 5


def test_a_revocation_landing_mid_lookup_is_not_undone_by_the_cache(
    api, monkeypatch, django_capture_on_commit_callbacks
):
    # given: a request has read the key's row (still active) and is about to cache it,
    # when staff revoke the key and the revocation commits first
    real_cache = auth.cache

    class RevokeBeforeFill:
        def __getattr__(self, name):
            return getattr(real_cache, name)

        def _revoke(self):
            with django_capture_on_commit_callbacks(execute=True):
                api_key_revoke(api_key=ApiKey.objects.get(pk=api.api_key.pk), revoked_by="ops")

        def add(self, key, value, timeout=None):
            self._revoke()
            return real_cache.add(key, value, timeout=timeout)

        def set(self, key, value, timeout=None):
            self._revoke()
            return real_cache.set(key, value, timeout=timeout)

    real_cache.clear()
    monkeypatch.setattr(auth, "cache", RevokeBeforeFill())
    first = api.get(URL)  # read before the revocation: still served
    monkeypatch.setattr(auth, "cache", real_cache)

    # then: the next request sees the revocation, not the stale row
    later = api.get(URL)
    assert first.status_code == 200
    assert later.status_code == 401
    assert error_code(later) == "api_key_revoked"


def test_scope_changes_take_effect_on_the_next_request(
    make_client, django_capture_on_commit_callbacks
):
    client = make_client(("read",))
    assert client.get(URL).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        api_key_update(
            api_key=client.api_key, name="c", scopes=["agent"], rate_limit_per_minute=None
        )
    assert client.get(URL).status_code == 403
