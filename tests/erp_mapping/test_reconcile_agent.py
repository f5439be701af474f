"""The agent's stock endpoints (the sandbox), as an agent implementer reads the protocol."""

import hashlib
import time
from decimal import Decimal

import pytest
import requests

from core.sandbox import SandboxServer
from erp_mapping.agent_server import AgentServer
from erp_mapping.clients.agent import AgentCallError, AgentClient, signature_make
from erp_mapping.services.reconcile.protocol import ROWS_PAGE, SkuRange, agent_rows

SECRET = "agent-test-secret"
CHECKSUMS_TARGET = b"GET /stock/checksums?ranges=.."


@pytest.fixture
def served():
    app = AgentServer(stock={"secret": SECRET, "page_rows": 3})
    with SandboxServer(app) as server:
        app.client = AgentClient(agent_url=server.url, secret=SECRET, timeout=5)
        app.url = server.url
        yield app


def test_agent_checksums_hash_the_sorted_lines(served):
    # given rows loaded out of order, one with quantity 0 (not held)
    served.stock_load(
        [
            ("B", "MAIN", Decimal("2.5")),
            ("A", "STORE", 1),
            ("A", "MAIN", "3.125"),
            ("C", "MAIN", 0),
        ]
    )

    # when
    answer = served.client.call("GET", "stock/checksums", params={"ranges": "..B,B..,..%2E"})

    # then
    lines = b"A|MAIN|3.125\nA|STORE|1.000\n"
    assert answer.data == {
        "ranges": [
            {"range": "..B", "count": 2, "sha256": hashlib.sha256(lines).hexdigest()},
            {
                "range": "B..",
                "count": 1,
                "sha256": hashlib.sha256(b"B|MAIN|2.500\n").hexdigest(),
            },
            {"range": "..%2E", "count": 0, "sha256": hashlib.sha256(b"").hexdigest()},
        ]
    }


def test_agent_stock_pages_through_a_range_with_a_cursor(served):
    served.stock_load([(f"S{i}", "MAIN", i + 1) for i in range(8)])

    rows = list(agent_rows(served.client, SkuRange("S1", "S7"), calls=(calls := [0])))

    assert [row["sku"] for row in rows] == [f"S{i}" for i in range(1, 7)]
    assert rows[0] == {"sku": "S1", "warehouse": "MAIN", "quantity": "2.000"}
    assert calls == [2]  # pages of 3 rows
    assert served.stock_rows_served == 6
    assert ROWS_PAGE > 3  # the agent's own cap wins


@pytest.mark.parametrize(
    "header",
    [
        None,
        "t=1,v1=00",
        signature_make("another-secret", CHECKSUMS_TARGET, int(time.time())),
        signature_make(SECRET, CHECKSUMS_TARGET, int(time.time()) - 600),  # too old
        signature_make(SECRET, b"", int(time.time())),  # the time alone
    ],
)
def test_agent_refuses_a_missing_or_wrong_signature(served, header):
    headers = {} if header is None else {"X-SyncStore-Signature": header}

    answer = requests.get(f"{served.url}/stock/checksums?ranges=..", headers=headers, timeout=5)

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_signature"


def test_agent_signed_get_binds_its_path_and_query(served):
    # given: the request target of one call, as requests encodes it ("," as %2C)
    served.stock_load([("A", "MAIN", 1), ("B", "MAIN", 2)])
    signed = {
        "X-SyncStore-Signature": signature_make(
            SECRET, b"GET /stock/checksums?ranges=..B%2CB..", int(time.time())
        )
    }

    # when: the call as signed, then replayed with another query and on another path
    url = f"{served.url}/stock/checksums"
    sent = requests.get(url, {"ranges": "..B,B.."}, headers=signed, timeout=5)
    other_query = requests.get(url, {"ranges": ".."}, headers=signed, timeout=5)
    other_path = requests.get(f"{served.url}/stock?from_sku=&to_sku=", headers=signed, timeout=5)

    # then
    assert sent.status_code == 200
    assert [r["count"] for r in sent.json()["ranges"]] == [1, 1]
    assert other_query.status_code == 401
    assert other_path.status_code == 401
    assert other_query.json()["error"] == "invalid_signature"


def test_agent_client_signs_the_request_target_of_a_get(served):
    served.client.call("GET", "stock/checksums", params={"ranges": "..B,B.."})

    # the signature the client sent covers what the agent received, and nothing else
    call = served.requests[-1]
    header = call.headers["X-Syncstore-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    target = f"GET {call.path}?{call.query_string}".encode()
    assert call.query_string == "ranges=..B%2CB.."
    assert header == signature_make(SECRET, target, timestamp)
    assert header != signature_make(SECRET, b"", timestamp)


def test_agent_refuses_more_ranges_than_it_takes(served):
    with pytest.raises(AgentCallError) as caught:
        served.client.call("GET", "stock/checksums", params={"ranges": ",".join([".."] * 257)})

    assert caught.value.status == 400
    assert caught.value.body["error"] == "too_many_ranges"


@pytest.mark.parametrize("ranges", ["", "a..b..c", "%FF.."])
def test_agent_refuses_a_malformed_range(served, ranges):
    with pytest.raises(AgentCallError) as caught:
        served.client.call("GET", "stock/checksums", params={"ranges": ranges})

    assert caught.value.status == 400


def test_agent_stock_set_get_and_remove(served):
    served.stock_generate(20, warehouses=("MAIN", "STORE"))
    served.stock_set("ERP-0000003", "STORE", 0)
    served.stock_set("ERP-0000003", "MAIN", "4.5")

    assert served.stock_count() == 20
    assert served.stock_get("ERP-0000003", "MAIN") == Decimal("4.5")
    assert served.stock_get("ERP-0000003", "STORE") == 0
    assert [r[:2] for r in served.stock_rows("ERP-0000003", "ERP-0000004")] == [
        ("ERP-0000003", "MAIN")
    ]


def test_agent_takes_vendor_credentials_through_its_control_route():
    """An agent served on its own is given a vendor's secret over HTTP; its orders and stock
    endpoints then accept that vendor's signed calls."""
    import json as _json
    import time as _time

    import requests

    from core.sandbox import SandboxServer
    from erp_mapping.agent_server import AgentServer
    from erp_mapping.clients.agent import signature_make

    app = AgentServer()
    with SandboxServer(app) as server:
        refused = requests.post(
            f"{server.url}/_sandbox/configure", json={"credentials": "nope"}, timeout=5
        )
        assert refused.status_code == 400
        answer = requests.post(
            f"{server.url}/_sandbox/configure",
            json={"credentials": [{"secret": "s3", "callback_token": "tok"}], "mode": "sync"},
            timeout=5,
        )
        assert answer.status_code == 200
        assert answer.json()["vendors"] == 1
        signed = {
            "X-SyncStore-Signature": signature_make("s3", CHECKSUMS_TARGET, int(_time.time()))
        }
        stock = requests.get(f"{server.url}/stock/checksums?ranges=..", headers=signed, timeout=5)
        assert stock.status_code == 200
        body = _json.dumps(
            {
                "job_id": 1,
                "operation": "order.create",
                "order": {"order_number": "A-1"},
                "lines": [],
            }
        ).encode()
        order = requests.post(
            f"{server.url}/orders",
            data=body,
            headers={
                "X-SyncStore-Signature": signature_make("s3", body, int(_time.time())),
                "Idempotency-Key": "1",
                "Content-Type": "application/json",
            },
            timeout=5,
        )
        assert order.status_code == 200
        assert order.json()["erp_reference"] == "SO-000001"
