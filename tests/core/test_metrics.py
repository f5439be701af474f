"""/metrics: labels taken from requests stay bounded, and check --deploy flags a public /metrics."""

import pytest
from django.core.checks import run_checks
from django.test import Client, override_settings
from prometheus_client import REGISTRY

pytestmark = pytest.mark.django_db

HISTOGRAM = "syncstore_http_request_duration_seconds"


def _request_series() -> set[tuple]:
    return {
        tuple(sorted(sample.labels.items()))
        for metric in REGISTRY.collect()
        if metric.name == HISTOGRAM
        for sample in metric.samples
        if sample.name == f"{HISTOGRAM}_count"
    }


def _count(**labels) -> float:
    return REGISTRY.get_sample_value(f"{HISTOGRAM}_count", labels) or 0.0


def test_metrics_invented_methods_are_counted_as_other_without_new_series():
    client = Client()
    client.generic("BREW", "/health/live")  # the first one may add the "other" series
    before = _request_series()
    other_before = _count(method="other", route="health/live", status="405")

    # when
    for method in ["PROPFIND", "FOO", "X-EVIL", "MKCOL", "ZZZZZZZZZZZZ"]:
        client.generic(method, "/health/live")

    # then
    assert _request_series() == before
    assert _count(method="other", route="health/live", status="405") == other_before + 5
    body = client.get("/metrics").content.decode()
    assert 'method="PROPFIND"' not in body
    assert 'method="other"' in body


def test_metrics_routes_are_url_patterns_never_raw_paths():
    client = Client()

    client.get("/api/v1/products/SKU-SECRET-0001/")
    client.get("/no/such/page-4711")

    labels = {dict(series)["route"] for series in _request_series()}
    assert "api/v1/products/<sku>/" in labels
    assert "unmatched" in labels
    assert not any("SKU-SECRET" in label or "4711" in label for label in labels)


def _warnings(**settings) -> list[str]:
    with override_settings(**settings):
        return [m.id for m in run_checks(include_deployment_checks=True)]


def test_check_deploy_warns_when_metrics_is_public_in_production():
    assert "core.W010" in _warnings(DEBUG=False, METRICS_BEARER_TOKEN="")


def test_check_deploy_is_quiet_when_metrics_has_a_token_or_in_debug():
    assert "core.W010" not in _warnings(DEBUG=False, METRICS_BEARER_TOKEN="m-token")
    assert "core.W010" not in _warnings(DEBUG=True, METRICS_BEARER_TOKEN="")
