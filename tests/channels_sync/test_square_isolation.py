"""Square: a batch refused without naming the change at fault is isolated by halves within
the push call; a token refresh answered without a token; our clock ahead of Square's."""

import json
import logging
import time
from datetime import UTC, datetime

import pytest
import requests

from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.square import SquareAdapter
from channels_sync.adapters.square import stock as square_stock
from channels_sync.sandbox.square import SquareSandbox
from core.sandbox import Fault
from tests.channels_sync import square_fixtures
from tests.channels_sync.square_fixtures import square_keys

_square_server = square_fixtures._square_server
square = square_fixtures.square

KEYS = [square_keys(n) for n in range(10)]
BAD = 6  # the listing Square refuses


@pytest.fixture
def sandbox(square) -> SquareSandbox:
    square.app.configure(listings=[{**k, "quantity": 7} for k in KEYS])
    return square.app


@pytest.fixture
def adapter(square, sandbox) -> SquareAdapter:
    return SquareAdapter(
        base_url=square.url, auth_base_url=square.url, credentials=sandbox.credentials()
    )


def batch() -> list[StockUpdate]:
    return [
        StockUpdate(listing_id=n + 1, keys=dict(k), quantity=20 + n) for n, k in enumerate(KEYS)
    ]


def sent_keys(sandbox: SquareSandbox) -> list[str]:
    return [json.loads(r.body)["idempotency_key"] for r in sandbox.requests]


def test_square_refusal_naming_no_change_is_isolated_so_only_that_listing_fails(adapter, sandbox):
    # given one listing Square refuses with an error that names no change
    sandbox.configure(reject=[KEYS[BAD]], reject_unattributed=True)

    result = adapter.push_stock(batch(), idempotency_key="push-key-1")

    # then that listing alone fails for good; the nine others are applied
    assert result.outcome == Outcome.PARTIAL
    assert [(i.listing_id, i.ok, i.retryable) for i in result.items] == [
        (n + 1, n != BAD, False) for n in range(10)
    ]
    assert result.items[BAD].error.startswith("refused: ")
    assert "Inventory tracking is off for this item variation." in result.items[BAD].error
    assert [sandbox.quantity(k) for k in KEYS] == [7 if n == BAD else 20 + n for n in range(10)]
    # in seven calls: the batch, its halves, the refused half's halves, then 5 and 6 alone
    keys = sent_keys(sandbox)
    assert len(keys) == 7
    assert keys[0] == "push-key-1"
    assert keys[1:3] == [
        square_stock.sub_key("push-key-1", "0"),
        square_stock.sub_key("push-key-1", "1"),
    ]
    assert len(set(keys)) == 7
    sizes = [len(json.loads(r.body)["changes"]) for r in sandbox.requests]
    assert sizes == [10, 5, 5, 2, 3, 1, 1]
    assert sandbox.counts["items_rejected"] == 4


def test_square_sandbox_refusal_can_name_no_change(square, sandbox):
    sandbox.configure(reject=[KEYS[BAD]], reject_unattributed=True)
    count = {**KEYS[BAD], "state": "IN_STOCK", "quantity": "1"}
    count["occurred_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    answer = requests.post(
        square.url + "/v2/inventory/changes/batch-create",
        json={
            "idempotency_key": "raw",
            "changes": [{"type": "PHYSICAL_COUNT", "physical_count": count}],
        },
        headers={"Authorization": f"Bearer {sandbox.credentials()['access_token']}"},
        timeout=5,
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "errors": [
            {
                "category": "INVALID_REQUEST_ERROR",
                "code": "INVALID_VALUE",
                "detail": "Inventory tracking is off for this item variation.",
            }
        ]
    }


def test_square_isolation_is_bounded_and_leaves_the_unsettled_to_retry(
    adapter, sandbox, monkeypatch
):
    monkeypatch.setattr(square_stock, "ISOLATION_CALLS_MAX", 3)
    sandbox.configure(reject=[KEYS[BAD]], reject_unattributed=True)

    result = adapter.push_stock(batch(), idempotency_key="push-key-2")

    # then the first half is applied; the rest could not be settled within three more calls
    assert len(sandbox.requests) == 4
    assert [(i.ok, i.retryable) for i in result.items[:5]] == [(True, False)] * 5
    assert [(i.ok, i.retryable) for i in result.items[5:]] == [(False, True)] * 5
    assert result.items[7].error.startswith("not isolated within 3 calls")
    assert result.outcome == Outcome.PARTIAL


def test_square_isolation_stops_at_a_part_failing_as_a_whole(adapter, sandbox):
    # the batch refused naming no change, then its first half failing as a whole (500)
    refusal = {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "INVALID_VALUE"}]}
    sandbox.inject(Fault(status=400, body=json.dumps(refusal)))
    sandbox.inject(Fault(status=500, body="{}"))

    result = adapter.push_stock(batch(), idempotency_key="push-key-3")

    assert len(sandbox.requests) == 2
    assert all(not i.ok and i.retryable for i in result.items)
    assert result.items[0].error.startswith("not applied (retryable)")
    assert [sandbox.quantity(k) for k in KEYS] == [7] * 10


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, "<html><body>404 Not Found</body></html>"),
        (413, "<html><body>413 Request Entity Too Large</body></html>"),
        (400, json.dumps({"errors": [{"category": "API_ERROR", "code": "BAD_REQUEST"}]})),
        (400, json.dumps({"message": "no Square errors here"})),
    ],
)
def test_square_refusal_without_squares_request_errors_is_not_isolated(
    adapter, sandbox, status, body
):
    # a proxy's page, or an answer without Square's INVALID_REQUEST_ERROR rows
    sandbox.inject(Fault(status=status, body=body))

    result = adapter.push_stock(batch(), idempotency_key="proxy")

    # then one permanent failure of the batch, in one call
    assert result.outcome == Outcome.PERMANENT
    assert result.http_status == status
    assert result.items == []
    assert len(sandbox.requests) == 1
    assert [sandbox.quantity(k) for k in KEYS] == [7] * 10


def test_square_isolation_stops_at_a_throttled_part_and_paces_its_calls(
    adapter, sandbox, monkeypatch
):
    # given isolating calls paced 0.2 s apart, and the first half throttled
    monkeypatch.setattr(square_stock, "ISOLATION_PAUSE_SECONDS", 0.2)
    refusal = {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "INVALID_VALUE"}]}
    throttled = {"errors": [{"category": "RATE_LIMIT_ERROR", "code": "RATE_LIMITED"}]}
    sandbox.inject(Fault(status=400, body=json.dumps(refusal)))
    sandbox.inject(Fault(status=429, body=json.dumps(throttled)))
    started = time.monotonic()

    result = adapter.push_stock(batch(), idempotency_key="paced")

    # then no further part is sent: every change is retryable, nothing applied
    assert len(sandbox.requests) == 2
    assert time.monotonic() - started >= 0.2
    assert [(i.ok, i.retryable) for i in result.items] == [(False, True)] * 10
    assert result.items[0].error.startswith("not applied (throttled)")
    assert result.outcome == Outcome.PARTIAL
    assert [sandbox.quantity(k) for k in KEYS] == [7] * 10


def test_square_single_change_refused_without_a_field_is_permanent(adapter, sandbox):
    sandbox.configure(reject=[KEYS[BAD]], reject_unattributed=True)

    result = adapter.push_stock([batch()[BAD]], idempotency_key="one")

    assert result.outcome == Outcome.PERMANENT
    assert len(sandbox.requests) == 1


def test_square_token_refresh_answered_without_a_token_is_retryable(adapter, sandbox):
    sandbox.inject(Fault(status=200, body=json.dumps({"token_type": "bearer"})))

    with pytest.raises(AdapterError) as failed:
        adapter.token_refresh()

    assert failed.value.outcome == Outcome.RETRYABLE
    assert "without an access_token" in str(failed.value)
    # the refresh token still stands: the next refresh works
    assert adapter.token_refresh()["access_token"]


def test_square_our_clock_ahead_is_retryable_and_logged_as_such(adapter, sandbox, caplog):
    sandbox.configure(clock_offset=-120)  # Square's clock two minutes behind ours
    caplog.set_level(logging.WARNING)

    result = adapter.push_stock(batch()[:2], idempotency_key="ahead")

    assert result.outcome == Outcome.RETRYABLE
    assert result.items == []
    assert len(sandbox.requests) == 1  # not isolated: no change is at fault
    assert any("square.clock_ahead" in r.getMessage() for r in caplog.records)
    assert sandbox.counts["bad_timestamp"] == 1
