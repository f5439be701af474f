"""Liveness and readiness probes, as JSON."""

import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection

logger = structlog.get_logger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", timeout=10)
    if cache.get(key) != "ok":
        raise RuntimeError("cache did not return the value it was given")
    cache.delete(key)


def _check_broker() -> None:
    # A fresh connection (not the pool): readiness must show the broker answers now.
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


# Without these the API still answers (the cache degrades to the database, the queue's work
# waits for the sweep): failing, the process is degraded but stays in service.
_DEGRADABLE = frozenset({"cache", "broker"})


def _checks() -> dict[str, Callable[[], None]]:
    checks = {"database": _check_database, "cache": _check_cache}
    if not settings.CELERY_TASK_ALWAYS_EAGER and settings.CELERY_BROKER_URL != "memory://":
        checks["broker"] = _check_broker
    return checks


# Features that report their own state in readiness's `details` (the ERP agents' circuit
# breakers, ...). Apps register them in `ready`, since core imports no app. A detail never
# changes the status: a feature in trouble degrades that feature, not the process.
_DETAILS: dict[str, Callable[[], Any]] = {}


def register_readiness_detail(name: str, read: Callable[[], Any]) -> None:
    """Show `read()` (JSON-serialisable) under `details.<name>` of `/health/ready`."""
    _DETAILS[name] = read


def _details() -> dict[str, Any]:
    details: dict[str, Any] = {}
    for name, read in sorted(_DETAILS.items()):
        try:
            details[name] = read()
        except Exception as exc:
            logger.warning("health.detail_failed", detail=name, error=type(exc).__name__)
            details[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return details


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The process answers HTTP."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """The process can serve: the database answers (503 `error` when it does not).

    The cache and (when configured) the broker are checked too; when one of them fails the
    status is `degraded` and the answer stays 200, because the API keeps serving without
    them and taking the process out of service would turn a degraded API into none.
    `details` holds what features registered (`register_readiness_detail`), for people and
    dashboards; it never changes the status.
    """
    results: dict[str, dict] = {}
    failed: set[str] = set()
    for name, check in _checks().items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:
            failed.add(name)
            results[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            results[name] = {"status": "ok"}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    if failed - _DEGRADABLE:
        status, code = "error", 503
    elif failed:
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "checks": results, "details": _details()}, status=code)
