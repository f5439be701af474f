import io
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import ijson
import pytest
import requests
from django.test import Client

from core.sandbox import (
    SandboxApp,
    SandboxRequest,
    SandboxResponse,
    SandboxServer,
    SlackSandbox,
    StreamCut,
)
from erp_mapping.models import ErpAgent
from erp_mapping.sandbox import (
    DEFAULT_TOKEN,
    AgentApiError,
    AgentSimulator,
    ErpSandbox,
)
from erp_mapping.services.agents import agent_register
from inventory.models import Product, StockLevel
from tests.erp_mapping.factories import ErpCodeMappingFactory

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture
def erp():
    """The ERP sandbox on a local port (`erp.url` is its base URL)."""
    app = ErpSandbox()
    with SandboxServer(app) as server:
        app.url = server.url
        yield app


def get(erp: ErpSandbox, **kwargs) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    return requests.get(erp.url + "/inventory", timeout=30, **kwargs)


def parsed(body: bytes) -> list:
    return json.loads(body, parse_float=Decimal)


def is_clean(row: dict) -> bool:
    qty = row.get("qty")
    return (
        isinstance(row.get("sku"), str)
        and isinstance(qty, int | Decimal)
        and not isinstance(qty, bool)
        and qty >= 0
    )


# --- ERP sandbox ---------------------------------------------------------------------------------


def test_erp_sandbox_refuses_a_wrong_or_missing_token(erp):
    missing = get(erp, headers={})
    wrong = get(erp, headers={"Authorization": "Bearer nope"})
    not_bearer = get(erp, headers={"Authorization": DEFAULT_TOKEN})
    good = get(erp)

    for refused in (missing, wrong, not_bearer):
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert good.status_code == 200
    assert len(erp.requests) == 4
    assert erp.requests[0].path == "/inventory"


def test_erp_sandbox_serves_the_configured_size_spread_over_warehouses(erp):
    erp.configure(
        skus=2500, warehouses=["MAIN", "STORE"], decimal_ratio=0.3, discontinued_ratio=0.1
    )

    response = get(erp, stream=True)
    response.raw.decode_content = True
    streamed = list(ijson.items(response.raw, "item"))
    body = get(erp).content

    assert "Content-Length" not in response.headers  # streamed, not built whole
    rows = parsed(body)
    assert len(rows) == len(streamed) == 2500
    assert rows == streamed == list(erp.expected_rows())
    assert [row["sku"] for row in rows[:2]] == ["ERP-0000000", "ERP-0000001"]
    assert erp.sku(2499) == rows[-1]["sku"] == "ERP-0002499"
    assert Counter(row["warehouse"] for row in rows) == {"MAIN": 1250, "STORE": 1250}
    decimals = [row["qty"] for row in rows if isinstance(row["qty"], Decimal)]
    assert 600 < len(decimals) < 900
    assert all(qty.as_tuple().exponent == -3 for qty in decimals)
    assert 180 < sum(1 for row in rows if row.get("discontinued") is True) < 330


def test_erp_sandbox_rows_omit_the_warehouse_when_there_is_one(erp):
    erp.configure(skus=10, warehouses=["MAIN"])

    rows = get(erp).json()

    assert len(rows) == 10
    assert all(set(row) == {"sku", "qty"} for row in rows)


def test_erp_sandbox_same_generation_same_bytes(erp):
    erp.configure(skus=3000, warehouses=["A", "B", "C"], decimal_ratio=0.2, garbage_ratio=0.05)

    first, second = get(erp).content, get(erp).content
    again = ErpSandbox(skus=3000, warehouses=["A", "B", "C"], decimal_ratio=0.2, garbage_ratio=0.05)

    assert first == second == b"".join(again.body_chunks())
    erp.configure(seed=1)
    assert get(erp).content != first


@pytest.mark.parametrize("changed_ratio", [0.25, 1.0])
def test_erp_sandbox_new_generation_changes_the_expected_share(erp, changed_ratio):
    erp.configure(skus=10_000, decimal_ratio=0.2, changed_ratio=changed_ratio)
    before = {row["sku"]: row["qty"] for row in parsed(get(erp).content)}

    erp.configure(generation=1)
    after = {row["sku"]: row["qty"] for row in parsed(get(erp).content)}
    expected = {row["sku"]: row["qty"] for row in erp.expected_rows()}
    erp.configure(generation=0)
    back = {row["sku"]: row["qty"] for row in parsed(get(erp).content)}

    changed = sum(1 for sku, qty in after.items() if before[sku] != qty)
    assert after == expected
    assert set(after) == set(before)
    assert abs(changed / 10_000 - changed_ratio) < 0.02
    assert back == before


def test_erp_sandbox_garbage_rows_at_the_configured_ratio(erp):
    erp.configure(skus=5000, warehouses=["MAIN", "STORE"], garbage_ratio=0.2)

    rows = parsed(get(erp).content)

    seen: set[tuple] = set()
    kinds: Counter = Counter()
    clean = []
    for row in rows:
        key = (row.get("sku"), row.get("warehouse"))
        if "sku" not in row:
            kinds["missing_sku"] += 1
        elif isinstance(row["qty"], str) and row["qty"].isdigit():
            kinds["string_qty"] += 1
        elif not isinstance(row["qty"], int | Decimal) or isinstance(row["qty"], bool):
            kinds["non_numeric_qty"] += 1
        elif row["qty"] < 0:
            kinds["negative_qty"] += 1
        elif key in seen:
            kinds["duplicate_sku"] += 1
        else:
            clean.append(row)
        seen.add(key)
    garbage = sum(kinds.values())
    assert len(rows) == 5000
    assert 900 < garbage < 1100
    assert set(kinds) == {
        "missing_sku",
        "string_qty",
        "non_numeric_qty",
        "negative_qty",
        "duplicate_sku",
    }
    assert all(count > 100 for count in kinds.values())
    assert clean == list(erp.expected_rows())
    assert len(clean) + garbage == 5000


def test_erp_sandbox_serves_explicit_rows_verbatim(erp):
    rows = [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2.5, "discontinued": False}, {"qty": "x"}]
    erp.configure(rows=rows, chunk_rows=2)

    assert get(erp).json() == rows
    assert list(erp.expected_rows()) == rows
    erp.configure(rows=[])
    assert get(erp).content == b"[]"


def test_erp_sandbox_fails_the_first_calls_then_succeeds(erp):
    erp.configure(skus=5, fail_first=2, fail_status=503)

    statuses = [get(erp).status_code for _ in range(3)]
    erp.reset()
    erp.configure(skus=5, fail_first=1)
    default = get(erp)

    assert statuses == [503, 503, 200]
    assert default.status_code == 500
    assert default.json()["error"] == "sandbox_failure"
    assert get(erp).status_code == 200
    assert len(erp.requests) == 2


def test_erp_sandbox_latency_delays_the_answer(erp):
    erp.configure(skus=10)
    started = time.perf_counter()
    get(erp)
    quick = time.perf_counter() - started

    erp.configure(latency=0.4)
    started = time.perf_counter()
    slow = get(erp)
    slowed = time.perf_counter() - started

    assert slow.status_code == 200
    assert slowed >= 0.4 > quick


def test_erp_sandbox_trickle_streams_slow_chunks(erp):
    erp.configure(skus=50, chunk_rows=10, trickle=0.1)

    started = time.perf_counter()
    # One reader for the whole body: dropping a chunked reader mid-body closes the connection.
    chunks = get(erp, stream=True).iter_content(64)
    first_chunk = next(chunks)
    first_after = time.perf_counter() - started
    rest = b"".join(chunks)
    total = time.perf_counter() - started

    assert len(parsed(first_chunk + rest)) == 50
    assert total >= 0.4  # five chunks, four pauses
    assert first_after < 0.1  # the first rows arrive before the rest is produced


def test_erp_sandbox_truncate_gives_invalid_json(erp):
    erp.configure(skus=100, truncate=True)

    truncated = get(erp)
    response = get(erp, stream=True)
    response.raw.decode_content = True

    assert truncated.status_code == 200
    assert truncated.content.startswith(b'[{"sku":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated.content)
    with pytest.raises(ijson.IncompleteJSONError):
        list(ijson.items(response.raw, "item"))
    erp.configure(truncate=0)
    assert len(get(erp).json()) == 100


def test_erp_sandbox_answers_http11_with_a_framed_body(erp):
    erp.configure(skus=30, chunk_rows=10)

    chunked = get(erp)
    erp.configure(framing="length")
    sized = get(erp)

    assert chunked.raw.version == sized.raw.version == 11
    assert chunked.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in chunked.headers
    assert sized.headers["Content-Length"] == str(len(sized.content))
    assert "Transfer-Encoding" not in sized.headers
    assert chunked.content == sized.content
    assert len(parsed(sized.content)) == 30


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_erp_sandbox_cut_first_breaks_the_connection_mid_body(erp, framing):
    erp.configure(skus=30, chunk_rows=10, cut_first=2, framing=framing)

    cut = []
    for _ in range(2):
        received = bytearray()

        def read(response: requests.Response, into: bytearray = received) -> None:
            for chunk in response.iter_content(1024):
                into.extend(chunk)

        response = get(erp, stream=True)
        # the framing tells the client the body ended early: requests raises
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            read(response)
        cut.append(bytes(received))
    whole = get(erp)

    assert whole.status_code == 200
    assert len(parsed(whole.content)) == 30
    # (urllib3 may hold back the bytes of a short sized body: what arrived is a prefix)
    assert all(len(part) < len(whole.content) and whole.content.startswith(part) for part in cut)
    assert erp.config.cut_first == 0


def test_sandbox_streamed_body_raising_stream_cut_is_seen_as_incomplete():
    class Cutting(SandboxApp):
        def handle(self, request: SandboxRequest) -> SandboxResponse:
            def body():
                yield b"[1,"
                if request.path == "/cut":
                    raise StreamCut
                yield b"2]"

            return SandboxResponse(200, body())

    with SandboxServer(Cutting()) as server:
        whole = requests.get(server.url + "/whole", timeout=10)
        cut = requests.get(server.url + "/cut", stream=True, timeout=10)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            cut.content  # noqa: B018 - reading the body is the act under test

    assert whole.content == b"[1,2]"
    assert whole.headers["Connection"] == "close"


def test_erp_sandbox_streams_with_flat_memory():
    app = ErpSandbox(skus=200_000, decimal_ratio=0.1)

    tracemalloc.start()
    try:
        size = sum(len(chunk) for chunk in app.body_chunks())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert size > 5_000_000
    assert peak < size / 5


def test_erp_sandbox_configure_route_drives_it_over_http(erp):
    configured = requests.post(
        erp.url + "/_sandbox/configure",
        json={"skus": 3, "token": "t2", "sku_prefix": "X-", "warehouses": ["W1", "W2"]},
        timeout=5,
    )
    served = get(erp, headers={"Authorization": "Bearer t2"}).json()
    old_token = get(erp)
    unknown = requests.post(erp.url + "/_sandbox/configure", json={"sizes": 3}, timeout=5)
    bad = requests.post(erp.url + "/_sandbox/configure", json={"garbage_ratio": 2}, timeout=5)
    not_object = requests.post(erp.url + "/_sandbox/configure", json=[1], timeout=5)
    requests.post(erp.url + "/_sandbox/reset", timeout=5)

    assert configured.status_code == 200
    assert configured.json()["skus"] == 3
    assert configured.json()["warehouses"] == ["W1", "W2"]
    assert [row["sku"] for row in served] == ["X-0000000", "X-0000001", "X-0000002"]
    assert [row["warehouse"] for row in served] == ["W1", "W2", "W1"]
    assert old_token.status_code == 401
    assert unknown.status_code == 400
    assert "sizes" in unknown.json()["error"]
    assert bad.status_code == 400
    assert not_object.status_code == 400
    assert erp.config.skus == 1000  # reset restored the constructor's options
    assert erp.config.token == DEFAULT_TOKEN
    assert erp.requests == []


def test_sandbox_configure_route_is_404_for_a_sandbox_without_options():
    with SandboxServer(SlackSandbox()) as server:
        response = requests.post(server.url + "/_sandbox/configure", json={"x": 1}, timeout=5)
    assert response.status_code == 404


def test_erp_sandbox_unknown_path_and_method(erp):
    assert requests.get(erp.url + "/items", headers=AUTH, timeout=5).status_code == 404
    assert requests.post(erp.url + "/inventory", headers=AUTH, timeout=5).status_code == 405
    assert requests.get(erp.url + "/erp/v1/inventory", headers=AUTH, timeout=5).ok


def manage(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_sandbox_list_shows_erp_in_a_fresh_process():
    # A fresh interpreter: only autodiscovery can have imported erp_mapping.sandbox.
    out, err = manage("sandbox", "list").communicate(timeout=60)

    assert err == ""
    assert out.split() == sorted(out.split())
    assert {"erp", "slack"} <= set(out.split())


def test_sandbox_serve_only_erp_is_driven_from_another_process():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = manage("sandbox", "serve", "--only", "erp", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.post(url + "/_sandbox/configure", json={"skus": 7}, timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, "sandbox serve exited"
                assert time.monotonic() < deadline, "sandbox serve did not start"
                time.sleep(0.1)
        rows = requests.get(url + "/inventory", headers=AUTH, timeout=5).json()
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert len(rows) == 7


# --- Agent simulator ------------------------------------------------------------------------------


class AgentApiStandIn(SandboxApp):
    """Stands in for the agent API's wire contract: records batches, answers merged shapes."""

    name = "agent-api"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.headers.get("Authorization") != "Bearer ssa_test":
            return SandboxResponse.json(401, {"code": "not_authenticated"})
        if request.path.endswith("/heartbeat/"):
            return SandboxResponse.json(200, {"status": "online"})
        rows = request.json()["rows"]
        if len(rows) > 5000:
            return SandboxResponse.json(400, {"code": "batch_too_large"})
        key = "code" if "/warehouses/" in request.path else "sku"
        return SandboxResponse.json(
            200,
            {
                "counts": {"created": len(rows) - 1, "unchanged": 1},
                "results": [{"key": row[key], "status": "created"} for row in rows],
            },
        )


@pytest.fixture
def agent_api():
    app = AgentApiStandIn()
    with SandboxServer(app) as server:
        app.url = server.url
        yield app


def test_agent_simulator_posts_batches_of_at_most_5000_rows(agent_api):
    simulator = AgentSimulator(token="ssa_test", base_url=agent_api.url, seed=3)

    outcome = simulator.push_items(simulator.sample_items(12_000))

    posts = agent_api.requests
    assert [len(request.json()["rows"]) for request in posts] == [5000, 5000, 2000]
    assert {request.path for request in posts} == {"/api/v1/erp/ingest/items/"}
    assert all(r.headers["Authorization"] == "Bearer ssa_test" for r in posts)
    assert outcome.batches == 3
    assert outcome.rows == 12_000
    assert outcome.counts == {"created": 11_997, "unchanged": 3}
    assert len(outcome.results) == 12_000
    assert outcome.results[5000]["key"] == "ERP-0005000"


def test_agent_simulator_heartbeat_warehouses_and_stock(agent_api):
    simulator = AgentSimulator(token="ssa_test", base_url=agent_api.url + "/", batch_size=4)

    beat = simulator.heartbeat()
    warehouses = simulator.push_warehouses()
    stock = simulator.push_stock(simulator.sample_stock(simulator.sample_items(5)))

    assert beat == {"status": "online"}
    assert agent_api.requests[0].path == "/api/v1/erp/agents/heartbeat/"
    assert agent_api.requests[0].json() == {"version": simulator.version}
    assert [r["key"] for r in warehouses.results] == ["MAIN", "STORE", "TRANSIT"]
    assert (stock.rows, stock.batches) == (10, 3)  # 5 items x MAIN, STORE in batches of 4
    assert [r.path for r in agent_api.requests[2:]] == ["/api/v1/erp/ingest/stock/"] * 3


def test_agent_simulator_raises_on_a_refused_batch(agent_api):
    simulator = AgentSimulator(token="wrong", base_url=agent_api.url)

    with pytest.raises(AgentApiError) as refused:
        simulator.push_items(simulator.sample_items(3))

    assert refused.value.status == 401
    assert refused.value.body == {"code": "not_authenticated"}
    assert refused.value.outcome.batches == 0
    with pytest.raises(ValueError, match="batch_size"):
        AgentSimulator(token="t", base_url=agent_api.url, batch_size=5001)
    with pytest.raises(ValueError, match="exactly one transport"):
        AgentSimulator(token="t")


def sample_file_codes() -> dict[str, set[str]]:
    rows = json.loads((ROOT / "erp_mapping/data/item-mapping.json").read_text())
    codes: dict[str, set[str]] = {}
    for row in rows:
        if row["isActive"] and row["erpCode"]:
            codes.setdefault(row["mappingType"], set()).add(row["erpCode"])
    return codes


def test_agent_simulator_sample_items_use_codes_of_the_sample_file():
    codes = sample_file_codes()
    simulator = AgentSimulator(token="t", base_url="http://127.0.0.1:1", seed=7)

    items = list(simulator.sample_items(400))

    assert items == list(
        AgentSimulator(
            token="t", client=object(), seed=7, updated_at=simulator.updated_at
        ).sample_items(400)
    )
    assert len({item["sku"] for item in items}) == 400
    assert {item["unit_code"] for item in items} <= codes["unit"]
    assert {item["vat_code"] for item in items} <= codes["vat"]
    assert len({item["unit_code"] for item in items}) > 20  # spread over the file's units
    for item in items:
        assert set(item) >= {
            "erp_id", "sku", "name", "unit_code", "vat_code", "price_excl_vat",
            "price_incl_vat", "manage_stock", "allow_negative_stock", "updated_at",
        }  # fmt: skip
        if "subfamily_code" in item:
            assert item["subfamily_code"] in codes["subfamily"]
            assert item["subfamily_code"].startswith(item["family_code"])
        if "family_code" in item:
            assert item["family_code"] in codes["family"]
        excl, incl = Decimal(item["price_excl_vat"]), Decimal(item["price_incl_vat"])
        assert excl.as_tuple().exponent == incl.as_tuple().exponent == -2
        assert excl > 0
        assert incl >= excl
        assert datetime.fromisoformat(item["updated_at"]).utcoffset() is not None
        if "barcode" in item:
            digits = [int(d) for d in item["barcode"]]
            assert len(digits) == 13
            assert sum(d * (3 if n % 2 else 1) for n, d in enumerate(digits)) % 10 == 0
    vat_20 = next(item for item in items if item["vat_code"] == "1")  # "TVA 20%"
    assert Decimal(vat_20["price_incl_vat"]) == (
        Decimal(vat_20["price_excl_vat"]) * Decimal("1.2")
    ).quantize(Decimal("0.01"))
    assert any("subfamily_code" not in item for item in items)
    assert any(not item["manage_stock"] for item in items)  # hours, flat fees


def test_agent_simulator_sample_warehouses_and_stock_are_consistent():
    simulator = AgentSimulator(token="t", client=object())
    items = list(simulator.sample_items(200))
    warehouses = simulator.sample_warehouses()

    stock = list(simulator.sample_stock(items))
    next_generation = list(simulator.sample_stock(items, generation=1))

    assert [(w["code"], w["is_main"], w["is_default"], w["type"]) for w in warehouses] == [
        ("MAIN", True, True, "storage"),
        ("STORE", False, False, "storage"),
        ("TRANSIT", False, False, "transit"),
    ]
    assert len(stock) == 400
    assert {(row["sku"], row["warehouse_code"]) for row in stock} == {
        (item["sku"], code) for item in items for code in ("MAIN", "STORE")
    }
    units = {item["sku"]: item["unit_code"] for item in items}
    for row in stock:
        quantity = Decimal(row["quantity"])
        assert isinstance(row["quantity"], str)
        assert quantity >= 0
        assert (quantity.as_tuple().exponent == -3) == (units[row["sku"]] in {"KG", "L", "M", "M2"})
        assert Decimal(row["max_stock"]) > Decimal(row["min_stock"])
        assert datetime.fromisoformat(row["updated_at"]).utcoffset() is not None
    assert any("ordered_quantity" in row for row in stock)
    changed = sum(
        a["quantity"] != b["quantity"] for a, b in zip(stock, next_generation, strict=True)
    )
    assert changed > 300


def test_sandbox_streamed_body_keeps_sized_bodies_as_before():
    # The base app still sends Content-Length for a plain body (the streamed path is opt-in).
    app = SlackSandbox()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": app.webhook_path,
        "CONTENT_LENGTH": "12",
        "wsgi.input": io.BytesIO(b'{"text":"x"}'),
    }
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    assert (seen["status"], body) == ("200 OK", b"ok")
    assert seen["headers"]["Content-Length"] == "2"


@pytest.fixture
def agent_token(vendor) -> str:
    """A registered agent of the default vendor whose mappings are the sample file's codes."""
    for row in json.loads((ROOT / "erp_mapping/data/item-mapping.json").read_text()):
        if row["erpCode"]:
            ErpCodeMappingFactory(
                vendor=vendor,
                mapping_type=row["mappingType"],
                erp_code=row["erpCode"],
                resto_code=row["restoCode"],
                is_active=row["isActive"],
            )
    return agent_register(vendor=vendor, agent_url="http://agent.local", erp_type="sandbox").token


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {status: count for status, count in counts.items() if count}


@pytest.mark.django_db
def test_agent_simulator_ingests_through_the_real_api_in_process(vendor, agent_token):
    simulator = AgentSimulator(token=agent_token, client=Client(), batch_size=120)
    items = list(simulator.sample_items(300))

    beat = simulator.heartbeat()
    warehouses = simulator.push_warehouses()
    created = simulator.push_items(items)
    stock = simulator.push_stock(simulator.sample_stock(items))
    replayed = simulator.push_items(items)

    assert ErpAgent.objects.get(vendor=vendor).status == ErpAgent.Status.ONLINE
    assert beat
    assert sum(warehouses.counts.values()) == 3
    assert (created.batches, nonzero(created.counts)) == (3, {"created": 300})
    assert [result["key"] for result in created.results] == [item["sku"] for item in items]
    assert (stock.rows, nonzero(stock.counts)) == (600, {"created": 600})
    assert nonzero(replayed.counts) == {"unchanged": 300}
    kilo = next(item for item in items if item["unit_code"] == "KG")
    row = next(r for r in simulator.sample_stock([kilo], warehouses=["STORE"]))
    level = StockLevel.objects.get(product__sku=kilo["sku"], warehouse__code="STORE")
    assert level.on_hand == Decimal(row["quantity"])
    assert Product.objects.get(sku=kilo["sku"]).unit_code == "unit_kg_rm"
