import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from core.checks import placeholder_secrets_check, secrets_refuse_unsafe

ROOT = Path(__file__).resolve().parents[2]
VALID_KEY = "dGVzdC1rZXktb25lLWZvci1zeW5jc3RvcmUtdGVzdHM="


def env_example() -> dict[str, str]:
    """The settings a new user gets with `cp .env.example .env`."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def manage(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in env_example() and not key.startswith("DJANGO_")
    }
    environment.update(env_example(), DJANGO_SETTINGS_MODULE="config.settings", **extra_env)
    return subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [["check"], ["check", "--deploy"]])
def test_check_refuses_the_env_example_placeholders(command):
    # given the settings of a `.env` copied from `.env.example`
    # when
    result = manage(*command)

    # then
    assert result.returncode == 1
    assert "(core.E001) DJANGO_SECRET_KEY is still the placeholder" in result.stderr
    assert "(core.E002) FIELD_ENCRYPTION_KEYS is still the placeholder" in result.stderr
    assert "rotate_encryption_keys --generate-key" in result.stderr


def test_check_accepts_empty_keys_as_the_embedded_ones():
    # The Makefile's demo blanks the keys whatever `.env` holds.
    result = manage("check", DJANGO_SECRET_KEY="", FIELD_ENCRYPTION_KEYS="")

    assert result.returncode == 0, result.stderr


def test_generate_key_runs_with_the_placeholder_keys():
    result = manage("rotate_encryption_keys", "--generate-key")

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 44


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["not base64!"], "non-base64"),
        (["c2hvcnQ="], "32 bytes"),
        ([VALID_KEY, "generate-one-and-put-it-here"], "placeholder"),
    ],
)
def test_placeholder_secrets_check_refuses_unusable_encryption_keys(keys, message):
    with override_settings(FIELD_ENCRYPTION_KEYS=keys):
        problems = placeholder_secrets_check(None)

    assert [problem.id for problem in problems] == ["core.E002"]
    assert message in problems[0].msg


def test_placeholder_secrets_check_passes_real_keys():
    with override_settings(FIELD_ENCRYPTION_KEYS=[VALID_KEY], SECRET_KEY="x" * 50):
        assert placeholder_secrets_check(None) == []


def test_secrets_refuse_unsafe_stops_processes_that_run_no_checks():
    with (
        override_settings(SECRET_KEY="change-me-to-a-long-random-string"),
        pytest.raises(ImproperlyConfigured, match=r"core\.E001"),
    ):
        secrets_refuse_unsafe()


def test_wsgi_application_refuses_the_placeholder_keys():
    # gunicorn imports config.wsgi: the placeholder must stop it before the first request.
    result = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env={**os.environ, **env_example(), "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "ImproperlyConfigured" in result.stderr
    assert "core.E002" in result.stderr


@pytest.mark.parametrize("program", [["worker", "--pool", "solo", "-Q", "default"], ["beat"]])
def test_celery_refuses_to_start_with_the_placeholder_keys(program, tmp_path, db):
    # Celery swallows a signal receiver's exceptions: the refusal must still end the process.
    # (The test database, so that beat's scheduler loads and beat_init is reached.)
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    database = connection.settings_dict
    database_url = (
        f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    )
    result = subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            *program,
            "--loglevel",
            "WARNING",
            *(["--schedule", str(tmp_path / "beat")] if program == ["beat"] else []),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            **env_example(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CELERY_BROKER_URL": broker,
            "DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "refuses to start" in result.stderr + result.stdout
    assert "core.E002" in result.stderr + result.stdout
