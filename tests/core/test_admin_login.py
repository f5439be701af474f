"""Admin login throttling (django-axes): a user is locked out at an address, then unlocked."""

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "a-good-long-passphrase"
ATTACKER = "203.0.113.7"
OTHER_ADDRESS = "198.51.100.9"


@pytest.fixture(autouse=True)
def admins() -> None:
    User.objects.create_superuser("ops", "ops@example.com", PASSWORD)
    User.objects.create_superuser("lead", "lead@example.com", PASSWORD)


def _login(username: str, password: str, *, address: str = ATTACKER):
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})
    return response, client


def _fail_until_locked(username: str = "ops") -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response, _client = _login(username, "wrong")
        assert response.status_code in (200, 429)


def _logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_admin_login_correct_password_works_before_any_failure():
    response, client = _login("ops", PASSWORD)

    assert response.status_code == 302
    assert _logged_in(client)


def test_admin_login_locks_the_user_at_that_address_after_the_failure_limit():
    # given
    _fail_until_locked()

    # when: the right password, from the same address
    response, client = _login("ops", PASSWORD)

    # then
    assert response.status_code == 429
    assert b"locked" in response.content.lower()
    assert not _logged_in(client)
    assert AccessAttempt.objects.get(username="ops", ip_address=ATTACKER).failures_since_start >= (
        settings.AXES_FAILURE_LIMIT
    )


def test_admin_login_one_failure_short_of_the_limit_does_not_lock():
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login("ops", "wrong")

    response, client = _login("ops", PASSWORD)

    assert response.status_code == 302
    assert _logged_in(client)


def test_admin_login_lockout_spares_other_users_and_other_addresses():
    _fail_until_locked()

    other_user, other_user_client = _login("lead", PASSWORD)
    other_address, other_address_client = _login("ops", PASSWORD, address=OTHER_ADDRESS)

    assert other_user.status_code == 302
    assert _logged_in(other_user_client)
    assert other_address.status_code == 302
    assert _logged_in(other_address_client)


@pytest.mark.parametrize(
    ("command", "args"), [("axes_reset", []), ("axes_reset_username", ["ops"])]
)
def test_admin_login_axes_reset_unlocks(command, args):
    # given
    _fail_until_locked()
    assert _login("ops", PASSWORD)[0].status_code == 429

    # when
    call_command(command, *args, stdout=None)

    # then
    response, client = _login("ops", PASSWORD)
    assert response.status_code == 302
    assert _logged_in(client)
