import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from core.models import ApiKey

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_management_commands_keep_json_logs_out_of_their_output():
    # given the test database, and INFO logs (create_api_key logs `api_key.created`)
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": url,
        "DJANGO_LOG_LEVEL": "INFO",
        "DJANGO_SECRET_KEY": "x" * 50,
        "FIELD_ENCRYPTION_KEYS": "dGVzdC1rZXktb25lLWZvci1zeW5jc3RvcmUtdGVzdHM=",
    }

    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", "piped", "--scopes", "read"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then standard output is the human output alone, the JSON lines are on standard error
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert not any(line.startswith("{") for line in result.stdout.splitlines())
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert "api_key.created" in [event["event"] for event in events]
    assert ApiKey.objects.get(name="piped").prefix in key
