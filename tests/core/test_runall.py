import subprocess
import uuid
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.db import connection, connections

from core.management.commands.runall import database_ensure

ROOT = Path(__file__).resolve().parents[2]


def wrapper_for(**changes):
    """A new connection to the test database's server, with some settings changed."""
    default = connections["default"]
    return default.__class__({**default.settings_dict, **changes}, alias="preflight")


def database_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@pytest.mark.django_db
def test_database_ensure_creates_a_missing_postgresql_database():
    # given a DATABASE_URL naming a database that does not exist
    name = f"syncstore_preflight_{uuid.uuid4().hex[:8]}"
    missing, again = wrapper_for(NAME=name), wrapper_for(NAME=name)
    assert not database_exists(name)
    try:
        # when
        said = database_ensure(missing)

        # then
        assert said.startswith(f"created the PostgreSQL database {name} on ")
        assert database_exists(name)
        assert database_ensure(again) is None  # there now: nothing to do
    finally:
        missing.close()
        again.close()
        with missing._nodb_cursor() as cursor:  # outside the test's transaction
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db
def test_database_ensure_says_in_one_line_what_to_do_when_the_server_is_down():
    down = wrapper_for(PORT="1", NAME="syncstore")

    with pytest.raises(CommandError) as refused:
        database_ensure(down)

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("Cannot reach the database syncstore on ")
    assert "set DATABASE_URL" in message


@pytest.mark.django_db
def test_database_ensure_does_not_mistake_a_missing_role_for_a_missing_database():
    stranger = wrapper_for(USER=f"nobody_{uuid.uuid4().hex[:6]}", PASSWORD="")

    with pytest.raises(CommandError, match=r"^Cannot reach the database .*role"):
        database_ensure(stranger)


def test_make_run_passes_bind_to_runall():
    result = subprocess.run(
        ["make", "--dry-run", "--always-make", "run", "BIND=0.0.0.0:9000"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )

    assert "manage.py runall --bind 0.0.0.0:9000" in result.stdout
