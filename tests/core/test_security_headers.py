"""HSTS and the Content-Security-Policy, down to a real browser rendering the admin and docs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

CHROMIUM = "/usr/bin/chromium"
PAGES = ["/admin/login/", "/api/docs/"]
ONE_YEAR = 365 * 24 * 3600


def _csp(response) -> dict[str, list[str]]:
    directives = {}
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


# --- HSTS -----------------------------------------------------------------------------------


def test_hsts_sent_on_https_in_production_only():
    client = Client()

    over_tls = client.get("/health/live", secure=True)
    via_proxy = client.get("/health/live", HTTP_X_FORWARDED_PROTO="https")
    plain = client.get("/health/live")

    assert over_tls["Strict-Transport-Security"] == f"max-age={ONE_YEAR}"
    assert via_proxy["Strict-Transport-Security"] == f"max-age={ONE_YEAR}"
    assert "Strict-Transport-Security" not in plain


def _settings_in(env: dict[str, str], *names: str) -> list[str]:
    """Read settings as a fresh process started with `env` would see them."""
    code = "import django; django.setup(); from django.conf import settings as s; " + "; ".join(
        f"print(repr(s.{name}))" for name in names
    )
    varied = ("DJANGO_HSTS_", "DJANGO_SECURE_PROXY_SSL_HEADER", "DJANGO_DEBUG", "DATABASE_URL")
    base = {k: v for k, v in os.environ.items() if not k.startswith(varied)}
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code],
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "false", **env},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split("\n")[: len(names)]


@pytest.mark.parametrize(
    ("env", "hsts", "proxy"),
    [
        (
            {"DATABASE_URL": "postgres://u@db/x"},
            str(ONE_YEAR),
            "('HTTP_X_FORWARDED_PROTO', 'https')",
        ),
        ({"DATABASE_URL": "postgres://u@db/x", "DJANGO_DEBUG": "true"}, "0", None),
        ({"DATABASE_URL": "sqlite:////tmp/embedded.sqlite3"}, "0", None),
        ({"DATABASE_URL": "postgres://u@db/x", "DJANGO_HSTS_SECONDS": "600"}, "600", None),
        (
            {"DATABASE_URL": "postgres://u@db/x", "DJANGO_SECURE_PROXY_SSL_HEADER": ""},
            None,
            "None",
        ),
        (
            {
                "DATABASE_URL": "postgres://u@db/x",
                "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_TLS=on",
            },
            None,
            "('HTTP_X_TLS', 'on')",
        ),
    ],
)
def test_hsts_and_proxy_header_defaults_from_the_environment(env, hsts, proxy):
    seconds, header = _settings_in(env, "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER")

    if hsts is not None:
        assert seconds == hsts
    if proxy is not None:
        assert header == proxy


# --- Content-Security-Policy ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_csp_allows_scripts_from_self_and_the_nonce_only(path):
    response = Client().get(path)

    assert response.status_code == 200
    csp = _csp(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    assert "'unsafe-inline'" not in csp["style-src"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_csp_every_inline_script_and_style_carries_the_nonce(path):
    response = Client().get(path)
    html = response.content.decode()
    nonces = [v for v in _csp(response)["script-src"] if v.startswith("'nonce-")]

    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", html)
    executable = [
        (tag, attrs)
        for tag, attrs in inline
        if "application/json" not in attrs  # data only
    ]

    for tag, attrs in executable:
        assert nonces, f"{path}: inline <{tag}> but no nonce in the policy"
        assert f'nonce="{nonces[0][7:-1]}"' in attrs, f"{path}: <{tag}{attrs}> has no nonce"
    if path == "/api/docs/":
        assert [tag for tag, _ in executable] == ["style", "script"]


def test_csp_nonce_differs_per_request(db):
    first = _csp(Client().get("/api/docs/"))["script-src"]
    second = _csp(Client().get("/api/docs/"))["script-src"]

    assert first != second


# --- In a real browser --------------------------------------------------------------------------


def _browse(url: str, profile: Path) -> tuple[str, str]:
    """Load `url` in headless Chromium; return the rendered DOM and the console log."""
    result = subprocess.run(  # noqa: S603 - a fixed browser binary and arguments
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            # Let the page fetch the schema and render before the DOM is dumped.
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return result.stdout, result.stderr


browser = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)"
)


def _violations(console: str) -> list[str]:
    return [line for line in console.splitlines() if "Content Security Policy" in line]


@browser
@pytest.mark.django_db(transaction=True)
def test_csp_admin_and_swagger_ui_render_in_chromium_without_violations(live_server, tmp_path):
    admin_dom, admin_console = _browse(f"{live_server.url}/admin/login/", tmp_path / "a")
    docs_dom, docs_console = _browse(f"{live_server.url}/api/docs/", tmp_path / "b")

    assert _violations(admin_console) == []
    assert 'id="login-form"' in admin_dom
    assert _violations(docs_console) == []
    # Swagger UI rendered the schema: its title and the operations it lists.
    assert "SyncStore API" in docs_dom
    assert "opblock" in docs_dom
    assert "/api/v1/stock-mutations/" in docs_dom


@browser
@pytest.mark.django_db(transaction=True)
def test_csp_without_the_nonce_chromium_reports_the_violation(live_server, tmp_path):
    # The control for the test above: the same page under a policy without the nonce.
    policy = {"DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]}}
    policy["DIRECTIVES"]["script-src"] = ["'self'"]
    with override_settings(CONTENT_SECURITY_POLICY=policy):
        docs_dom, docs_console = _browse(f"{live_server.url}/api/docs/", tmp_path / "c")

    assert _violations(docs_console) != []
    assert "opblock" not in docs_dom


def _inline_without_nonce(response) -> list[str]:
    html = response.content.decode()
    nonces = [v[7:-1] for v in _csp(response)["script-src"] if v.startswith("'nonce-")]
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", html)
    return [
        f"<{tag}{attrs}>"
        for tag, attrs in inline
        if "application/json" not in attrs and not any(f'nonce="{n}"' in attrs for n in nonces)
    ]


@pytest.mark.django_db
def test_csp_logged_in_admin_pages_carry_the_nonce_on_every_inline_script(client):
    # Every registered admin's list and add pages, and django-celery-beat's task form (which
    # shows the crontab's reading with an inline script).
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.urls import reverse
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period="minutes")
    task = PeriodicTask.objects.create(name="probe", task="channels_sync.sweep", interval=every)
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    pages = [reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])]
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages += [reverse(f"{name}_changelist"), reverse(f"{name}_add")]

    offending = {}
    for page in pages:
        response = client.get(page)
        if response.status_code != 200:
            continue
        if found := _inline_without_nonce(response):
            offending[page] = found

    assert offending == {}
