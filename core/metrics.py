"""Prometheus metrics: request latency, domain counters, and gauges read at scrape time.

Counters live in each process; under gunicorn with several workers set
`PROMETHEUS_MULTIPROC_DIR` (an empty, writable directory) so `/metrics` sums them. Gauges
that describe the state of the system (open dead letters, active reservations, ...) are
read from the database at scrape time, so they are right whichever process answers.
"""

import hmac
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

HTTP_REQUESTS = Histogram(
    "syncstore_http_request_duration_seconds",
    "HTTP request latency by route and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STOCK_MOVEMENTS = Counter(
    "syncstore_stock_movements_total", "Ledger movements written, by kind.", ["kind"]
)
API_ERRORS = Counter("syncstore_api_errors_total", "API error responses, by code.", ["code"])
DEAD_LETTERS = Counter(
    "syncstore_dead_letters_recorded_total", "Jobs sent to the dead-letter queue.", ["source"]
)
ALERTS = Counter("syncstore_alerts_total", "Alerts raised or suppressed.", ["outcome"])
DEGRADED = Counter(
    "syncstore_degraded_total",
    "Operations that ran without a failing dependency (Redis), by feature.",
    ["feature"],
)


# Any other method (clients may send whatever they like) is counted as "other", so invented
# methods cannot create series without bound.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_ROUTE_NOISE = re.compile(r"[\^$]|\(\?P|\[\^/\.?\]\+\)|\[\^/\]\+\)")


def method_label(method: str | None) -> str:
    """Label a request method: one of the standard methods, or "other"."""
    return method if method in _KNOWN_METHODS else "other"


class RequestMetricsMiddleware:
    """Observe every request's latency under its URL route (not its raw path).

    Every label is bounded: the method by the standard set, the route by the URL patterns
    (unresolved paths are "unmatched"), the status by HTTP's codes.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # Router URLs are regexes: label them as readable, bounded route templates.
        route = _ROUTE_NOISE.sub("", match.route) if match is not None else "unmatched"
        HTTP_REQUESTS.labels(
            method_label(request.method), route, str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


_STATE_GAUGES: dict[str, tuple[str, Callable[[], float]]] = {}


def register_state_gauge(name: str, documentation: str, read: Callable[[], float]) -> None:
    """Publish a gauge whose value `read()` computes at scrape time (apps call this in ready)."""
    _STATE_GAUGES[name] = (documentation, read)


LabelledValues = Iterable[tuple[Sequence[str], float]]
_STATE_FAMILIES: dict[str, tuple[str, list[str], Callable[[], LabelledValues]]] = {}


def register_state_family(
    name: str, documentation: str, labels: list[str], read: Callable[[], LabelledValues]
) -> None:
    """Publish a labelled gauge: `read()` yields (label values, value) pairs at scrape time."""
    _STATE_FAMILIES[name] = (documentation, labels, read)


class DatabaseStateCollector:
    """Gauges computed when scraped, from the readers the apps registered."""

    def collect(self) -> Iterable[Metric]:
        for name, (documentation, read) in sorted(_STATE_GAUGES.items()):
            yield GaugeMetricFamily(name, documentation, value=read())
        for name, (documentation, labels, read) in sorted(_STATE_FAMILIES.items()):
            family = GaugeMetricFamily(name, documentation, labels=labels)
            for values, value in read():
                family.add_metric(list(values), value)
            yield family


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve the Prometheus exposition (bearer token required when one is configured)."""
    token = settings.METRICS_BEARER_TOKEN
    given = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return HttpResponse("unauthorized\n", status=401, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    state = CollectorRegistry()
    state.register(DatabaseStateCollector())
    body = generate_latest(registry) + generate_latest(state)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
