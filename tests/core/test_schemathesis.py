"""The OpenAPI schema is true: schemathesis drives every operation of the live server.

Each operation gets a small, derandomized batch of generated requests (valid ones, then ones
the schema forbids) sent to a real server with an admin key. The run fails on any 5xx, on a
status code or content type the schema does not document, on a body or header that does
not match the documented schema, and on invalid input the server accepts.
"""

import time
from decimal import Decimal

import pytest
import requests
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from channels_sync.models import Conflict
from channels_sync.services.conflicts import conflict_open
from core.services import api_key_create
from erp_mapping.models import SyncRun
from erp_mapping.services.agents import agent_register
from erp_mapping.services.erp_sync import erp_sync_job_create
from inventory.services import Origin, stock_reserve, stock_set
from orders.services import Actor, OrderLineInput, order_create
from tests.channels_sync.factories import (
    AllocationRuleFactory,
    ChannelFactory,
    ChannelListingFactory,
)
from tests.erp_mapping.factories import ErpCodeMappingFactory
from tests.inventory.factories import ProductFactory, WarehouseFactory, default_vendor

ORIGIN = Origin(source="test", actor="schemathesis")

EXAMPLES_PER_MODE = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Batch endpoints check each row on its own and answer 200 with the invalid rows listed (their
# documented contract), so a row that breaks the row schema is reported, not refused whole.
PER_ROW_BATCHES = {
    "/api/v1/erp/ingest/items/",
    "/api/v1/erp/ingest/stock/",
    "/api/v1/erp/ingest/warehouses/",
    "/api/v1/erp/mappings/seed/",
}


@pytest.fixture
def admin_key(transactional_db) -> str:
    return api_key_create(name="schemathesis", scopes=["read", "write", "admin"]).key


@pytest.fixture
def world(transactional_db) -> dict[str, object]:
    """A vendor with stock, a reservation, a channel, a mapping, a sync run, an order and a
    conflict.

    Positive cases address these rows (so detail answers are checked too); negative cases
    generate their own path parameters.
    """
    vendor = default_vendor()
    warehouse = WarehouseFactory(vendor=vendor, code="MAIN", is_default=True, is_main=True)
    product = ProductFactory(vendor=vendor)
    stock_set(product=product, warehouse=warehouse, quantity=Decimal("10"), origin=ORIGIN)
    reservation = stock_reserve(
        product=product, warehouse=warehouse, quantity=Decimal("2"), origin=ORIGIN
    )
    # Manual: the seeded conflict stays open for the resolve endpoint.
    channel = ChannelFactory(vendor=vendor, warehouses=[warehouse], conflict_policy="manual")
    listing = ChannelListingFactory(channel=channel, product=product)
    AllocationRuleFactory(channel=channel)
    conflict, _ = conflict_open(
        kind=Conflict.Kind.STOCK_MISMATCH,
        vendor=vendor,
        channel=channel,
        listing=listing,
        source=Conflict.Source.RECONCILIATION,
        ours=10,
        theirs=7,
    )
    ErpCodeMappingFactory(vendor=vendor)
    run = SyncRun.objects.create(
        vendor=vendor, status=SyncRun.Status.COMPLETED, started_at=timezone.now()
    )
    order = order_create(
        vendor=vendor,
        order_number="SEED-1",
        lines=[OrderLineInput(sku=product.sku, quantity=Decimal("1"))],
        actor=Actor(source="api", actor="schemathesis"),
    )
    # The order's ERP job (made on commit of its confirmation; it waits: no agent yet).
    job = erp_sync_job_create(order_id=order.pk, operation="order.create")
    ids = (
        {"/api/v1/erp/sync-runs/{id}/": run.pk, "/api/v1/erp/sync-jobs/{id}/": job.pk}
        | {f"/api/v1/orders/{{id}}/{tail}": order.pk for tail in ("", "cancel/", "ship/")}
        | {f"/api/v1/conflicts/{{id}}/{tail}": conflict.pk for tail in ("", "resolve/")}
    )
    return {
        "sku": product.sku,
        "code": warehouse.code,
        "channel_id": channel.pk,
        "vendor_id": str(vendor.pk),
        "id": ids.get,
        "reservation_id": reservation.pk,
    }


def _path_parameters(operation, world: dict) -> dict[str, object]:
    names = [parameter.name for parameter in operation.path_parameters]
    values = {}
    for name in names:
        if name == "id":
            values[name] = world["id"](operation.path) or world["reservation_id"]
        else:
            values[name] = world[name]
    return values


@pytest.fixture
def agent_token(transactional_db) -> str:
    registered = agent_register(
        vendor=default_vendor(),
        agent_url="http://127.0.0.1:1/agent",
        erp_type="generic",
        registered_by="schemathesis",
    )
    return registered.token


def _auth_headers(operation, admin_key: str, agent_token: str) -> dict[str, str]:
    security = operation.definition.raw.get("security") or []
    if any("ErpAgentToken" in requirement for requirement in security):
        return {"Authorization": f"Bearer {agent_token}"}
    return {"X-API-Key": admin_key}


def _exercise(
    operation,
    *,
    mode: GenerationMode,
    base_url: str,
    headers: dict,
    path_parameters: dict | None,
    session: requests.Session,
) -> int:
    """Send the operation's generated cases; return how many were sent."""
    checks = list(CHECKS)
    if mode.is_negative and operation.path not in PER_ROW_BATCHES:
        checks.append(negative_data_rejection)
    sent = 0

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(
            generation_mode=mode, headers=headers, path_parameters=path_parameters
        )
    )
    def run(case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=base_url, session=session, checks=checks)

    try:
        run()
    except Unsatisfiable:
        # Nothing of this operation can be negated (e.g. its only input is a fixed header).
        return sent
    return sent


def test_schemathesis_every_operation_answers_as_documented(
    live_server, admin_key, agent_token, world, settings, record_property
):
    # The live server runs in this process: lift the per-minute limit so every case is served.
    settings.API_KEY_RATE_LIMIT_PER_MINUTE = 1_000_000
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json", headers={"X-API-Key": admin_key}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    session = requests.Session()
    failures: list[str] = []
    sent = 0
    started = time.monotonic()

    for operation in operations:
        headers = _auth_headers(operation, admin_key, agent_token)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                sent += _exercise(
                    operation,
                    mode=mode,
                    base_url=live_server.url,
                    headers=headers,
                    path_parameters=_path_parameters(operation, world)
                    if mode.is_positive
                    else None,
                    session=session,
                )
            except FailureGroup as group:
                failures.append(f"{operation.label} [{mode.value}]\n{group.args[0]}")
            except Exception as exc:
                failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__} {exc}")

    elapsed = time.monotonic() - started
    print(f"schemathesis: {len(operations)} operations, {sent} requests in {elapsed:.1f} s")
    record_property("schemathesis_operations", len(operations))
    record_property("schemathesis_requests", sent)
    assert not failures, "\n\n".join(failures)
