import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# `NAME=value` lines of .env.example, set or commented out (`# NAME=value`).
SETTING = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def documented_settings() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {match.group(1) for line in lines if (match := SETTING.match(line))}


def reaching(service: dict) -> set[str]:
    """The settings a container of `service` gets from `.env` and its environment."""
    names = set(service.get("environment") or {})
    for entry in service.get("env_file") or []:
        path = entry["path"] if isinstance(entry, dict) else entry
        if path == ".env":
            names |= documented_settings()
    return names


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_docker_compose_passes_every_setting_of_env_to(name):
    service = compose()["services"][name]

    missing = documented_settings() - reaching(service)

    assert len(documented_settings()) > 50
    assert missing == set()
    # A fresh clone has no .env yet: compose must still start (with the embedded defaults).
    assert {"path": ".env", "required": False} in service["env_file"]


def test_docker_compose_web_sums_its_gunicorn_workers_metrics():
    web = compose()["services"]["web"]
    directory = web["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    # `$$` is compose's escape of a literal `$`.
    script = shlex.split(web["command"].replace("$$", "$"))[2]

    assert directory == "/tmp/syncstore-metrics"  # noqa: S108 - inside the container
    steps = [step.strip() for step in script.split("&&")]
    assert steps[0] == 'rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"'  # emptied at start
    assert steps[1] == 'mkdir -p "$PROMETHEUS_MULTIPROC_DIR"'
    assert "--config config/gunicorn.py" in steps[-1]
    assert "--workers 3" in steps[-1]
    assert "PROMETHEUS_MULTIPROC_DIR" not in compose()["services"]["worker"]["environment"]
