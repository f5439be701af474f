"""Amazon JSON_LISTINGS_FEED pushes: document, upload, feed, status polls and the processing
report, through the adapter against the sandbox over real HTTP."""

import gzip
import json
import time
import tracemalloc
import zlib

import pytest
import requests
from structlog.testing import capture_logs

from channels_sync.adapters.amazon import AmazonAdapter, feed_report
from channels_sync.adapters.amazon.feed_report import (
    ReportUnreadable,
    report_download,
    report_failures,
    report_feed_errors,
    report_shortfall,
)
from channels_sync.adapters.amazon.feeds import feed_document
from channels_sync.adapters.amazon.inflight import feeds_inflight
from channels_sync.adapters.base import Outcome, StockUpdate
from channels_sync.sandbox.amazon import AmazonSandbox
from core.sandbox import Fault, SandboxServer

SKUS = [f"FEED-{n:02d}" for n in range(25)]


def updates(quantities: dict[str, int]) -> list[StockUpdate]:
    return [
        StockUpdate(listing_id=n, keys={"seller_sku": sku}, quantity=q)
        for n, (sku, q) in enumerate(quantities.items(), start=1)
    ]


@pytest.fixture(scope="module")
def server():
    with SandboxServer(AmazonSandbox()) as running:
        yield running


@pytest.fixture
def sandbox(server, settings) -> AmazonSandbox:
    settings.AMAZON_FEED_POLL_SECONDS = 0.05
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 5.0
    app = server.app
    app.reset()
    app.configure(listings=[{"seller_sku": sku, "quantity": 1} for sku in SKUS])
    return app


@pytest.fixture
def adapter(server, sandbox) -> AmazonAdapter:
    return AmazonAdapter(base_url=server.url, credentials=sandbox.credentials())


def calls(sandbox: AmazonSandbox) -> list[tuple[str, str]]:
    shown = []
    for request in sandbox.requests:
        path = request.path
        for prefix in ("/feeds-upload/", "/feeds-download/", "/feeds/2021-06-30/feeds/"):
            if path.startswith(prefix):
                path = prefix + "*"
        if path.startswith("/feeds/2021-06-30/documents/"):
            path = "/feeds/2021-06-30/documents/*"
        shown.append((request.method, path))
    return shown


def test_amazon_feed_push_applies_every_message_but_the_refused_one(adapter, sandbox):
    # given 25 SKUs (over the threshold of 20), one of them locked on Amazon's side
    sandbox.configure(reject=[{"seller_sku": "FEED-07"}])
    wanted = {sku: n + 10 for n, sku in enumerate(SKUS)}

    result = adapter.push_stock(updates(wanted))

    # then that item alone failed, for good, and every other one is applied
    assert result.outcome == Outcome.PARTIAL
    failed = [item for item in result.items if not item.ok]
    assert [(item.listing_id, item.retryable) for item in failed] == [(8, False)]
    assert failed[0].error.startswith("feed ")
    assert "message 8: 90001001: The offer for this SKU is locked" in failed[0].error
    assert len(result.items) == 25
    for sku, quantity in wanted.items():
        expected = 1 if sku == "FEED-07" else quantity
        assert sandbox.quantity({"seller_sku": sku}) == expected
    # and the calls were the feed's, in order, none of them a patch
    steps = calls(sandbox)
    assert steps[:3] == [
        ("POST", "/feeds/2021-06-30/documents"),
        ("PUT", "/feeds-upload/*"),
        ("POST", "/feeds/2021-06-30/feeds"),
    ]
    assert steps[-2:] == [("GET", "/feeds/2021-06-30/documents/*"), ("GET", "/feeds-download/*")]
    assert all(method != "PATCH" for method, _ in steps)
    assert result.rate_per_second == pytest.approx(0.0083)


def test_amazon_feed_document_and_requests_are_what_amazon_documents(adapter, sandbox):
    adapter.push_stock(updates(dict.fromkeys(SKUS[:21], 3)))

    upload = next(r for r in sandbox.requests if r.method == "PUT")
    assert upload.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert "X-Amz-Access-Token" not in upload.headers  # a pre-signed URL takes no token
    document = json.loads(upload.body)
    assert document["header"] == {
        "sellerId": "A2SANDBOXSELLER",
        "version": "2.0",
        "issueLocale": "en_US",
    }
    assert [m["messageId"] for m in document["messages"]] == list(range(1, 22))
    assert document["messages"][0] == {
        "messageId": 1,
        "sku": "FEED-00",
        "operationType": "PATCH",
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "replace",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}],
            }
        ],
    }
    created = json.loads(
        next(r for r in sandbox.requests if r.path == "/feeds/2021-06-30/feeds").body
    )
    assert created["feedType"] == "JSON_LISTINGS_FEED"
    assert created["marketplaceIds"] == ["ATVPDKIKX0DER"]
    assert created["inputFeedDocumentId"].startswith("amzn1.tortuga.4.na.")


def test_amazon_feed_waits_through_queued_and_running_then_reads_a_gzip_report(adapter, sandbox):
    sandbox.configure(feed_delay=0.4, report_gzip=True, reject=[{"seller_sku": "FEED-01"}])

    result = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    assert result.outcome == Outcome.PARTIAL
    assert [item.listing_id for item in result.items if not item.ok] == [2]
    polls = [r for r in sandbox.requests if r.path.startswith("/feeds/2021-06-30/feeds/")]
    assert len(polls) >= 3  # IN_QUEUE, IN_PROGRESS, ..., DONE


def feed_creations(sandbox: AmazonSandbox) -> int:
    return sum(1 for r in sandbox.requests if r.path == "/feeds/2021-06-30/feeds")


def test_amazon_feed_still_running_past_the_wait_is_throttled_and_holds_the_seller(
    adapter, sandbox, settings
):
    # given feeds that take a second to process, and a push that waits 0.3 s for them
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.3
    sandbox.configure(feed_delay=1.0)

    first = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    # then the call is throttled (no attempt used), to be asked again every poll interval
    assert first.outcome == Outcome.THROTTLED
    assert first.retry_after == pytest.approx(0.05)
    assert "still IN_" in first.error
    assert first.items == []
    assert sandbox.updates == []

    # when newer quantities are pushed while that feed is live, by feed or by patch
    newer = adapter.push_stock(updates(dict.fromkeys(SKUS, 9)))
    patch = adapter.push_stock(updates({"FEED-00": 7}))

    # then nothing is sent: no second feed, no document, no patch
    assert (newer.outcome, patch.outcome) == (Outcome.THROTTLED, Outcome.THROTTLED)
    assert newer.retry_after == patch.retry_after == pytest.approx(0.05)
    assert feed_creations(sandbox) == 1
    assert sum(1 for r in sandbox.requests if r.path == "/feeds/2021-06-30/documents") == 1
    assert all(r.method != "PATCH" for r in sandbox.requests)

    # when the feed lands on Amazon's clock, nobody asking about it
    asked = len(sandbox.requests)
    time.sleep(1.2)
    assert len(sandbox.requests) == asked
    assert sandbox.updates == [(sku, 5) for sku in SKUS]

    # then the next push forgets it and sends the current quantities, which land last
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 5.0
    sandbox.configure(feed_delay=0)
    done = adapter.push_stock(updates(dict.fromkeys(SKUS, 9)))
    assert done.outcome == Outcome.OK
    assert feed_creations(sandbox) == 2
    assert sandbox.updates == [(sku, 5) for sku in SKUS] + [(sku, 9) for sku in SKUS]
    assert {sandbox.quantity({"seller_sku": sku}) for sku in SKUS} == {9}
    # and with nothing live any more, the next push asks about no feed
    before = len(sandbox.requests)
    assert adapter.push_stock(updates({"FEED-00": 3})).outcome == Outcome.OK
    assert [r.method for r in sandbox.requests[before:]] == ["PATCH"]


def test_amazon_live_feed_is_remembered_across_adapters_and_a_refused_status_is_auth(
    server, sandbox, settings
):
    # given a feed left live by one worker's adapter
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.1
    sandbox.configure(feed_delay=30)
    credentials = sandbox.credentials()
    one = AmazonAdapter(base_url=server.url, credentials=dict(credentials))
    assert one.push_stock(updates(dict.fromkeys(SKUS, 5))).outcome == Outcome.THROTTLED

    # then another worker's adapter of the same seller waits for it too
    other = AmazonAdapter(base_url=server.url, credentials=dict(credentials))
    assert other.push_stock(updates({"FEED-01": 2})).outcome == Outcome.THROTTLED
    assert feed_creations(sandbox) == 1

    # an expired token while asking about it is an auth answer (refresh, then ask again)
    sandbox.expire_tokens()
    expired = other.push_stock(updates({"FEED-01": 2}))
    assert (expired.outcome, expired.token_expired) == (Outcome.AUTH, True)
    assert all(r.method != "PATCH" for r in sandbox.requests)


def test_amazon_feed_status_unknown_to_amazon_is_forgotten(adapter, sandbox, settings):
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.1
    sandbox.configure(feed_delay=30)
    assert adapter.push_stock(updates(dict.fromkeys(SKUS, 5))).outcome == Outcome.THROTTLED

    sandbox.feeds.clear()  # Amazon no longer knows the feed (404)

    assert adapter.push_stock(updates({"FEED-01": 2})).outcome == Outcome.OK
    assert sandbox.quantity({"seller_sku": "FEED-01"}) == 2


@pytest.mark.parametrize("status", [400, 422])
def test_amazon_feed_status_refused_for_good_is_forgotten_and_logged(
    adapter, sandbox, settings, status
):
    # given a feed left live by a push
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.1
    sandbox.configure(feed_delay=30)
    assert adapter.push_stock(updates(dict.fromkeys(SKUS, 5))).outcome == Outcome.THROTTLED
    (feed_id,) = feeds_inflight(adapter)

    # when Amazon refuses the next question about it (a non-auth 4xx)
    refusal = {"errors": [{"code": "InvalidInput", "message": "Invalid feedId"}]}
    sandbox.inject(Fault(status=status, body=json.dumps(refusal)))
    with capture_logs() as logs:
        pushed = adapter.push_stock(updates({"FEED-01": 2}))

    # then the feed is forgotten and the push sends: the seller is not held for a day
    assert pushed.outcome == Outcome.OK
    assert sandbox.quantity({"seller_sku": "FEED-01"}) == 2
    assert feeds_inflight(adapter) == []
    forgotten = [e for e in logs if e["event"] == "amazon.feed_forgotten"]
    assert [(e["feed_id"], e["http_status"]) for e in forgotten] == [(feed_id, status)]
    assert "InvalidInput" in forgotten[0]["error"]
    # and the next push asks about no feed
    before = len(sandbox.requests)
    assert adapter.push_stock(updates({"FEED-02": 3})).outcome == Outcome.OK
    assert [r.method for r in sandbox.requests[before:]] == ["PATCH"]


def test_amazon_feed_report_with_an_error_of_the_whole_feed_is_retryable(adapter, sandbox):
    sandbox.configure(feed_report="feed_error")

    result = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    assert result.outcome == Outcome.RETRYABLE
    assert result.items == []
    assert "refused as a whole: 90000900: The feed could not be processed" in result.error
    assert sandbox.updates == []
    # the sandbox's report names no message for that issue
    (report_id,) = [d for d, doc in sandbox.documents.items() if doc.get("report")]
    report = json.loads(sandbox.documents[report_id]["content"])
    assert report["issues"] == [
        {
            "code": "90000900",
            "severity": "ERROR",
            "message": "The feed could not be processed: the document is malformed.",
        }
    ]
    assert report["summary"]["messagesProcessed"] == 0


def test_amazon_feed_report_counting_fewer_messages_leaves_them_retryable(adapter, sandbox):
    sandbox.configure(feed_report="short", reject=[{"seller_sku": "FEED-03"}])

    result = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    # then only the refused message fails for good; no other one is confirmed
    assert result.outcome == Outcome.PARTIAL
    assert [(i.listing_id, i.ok, i.retryable) for i in result.items if i.listing_id == 4] == [
        (4, False, False)
    ]
    others = [i for i in result.items if i.listing_id != 4]
    assert len(others) == 24
    assert all(not i.ok and i.retryable for i in others)
    assert others[0].error.endswith("the report counts 12 of 25 messages processed")
    # the sandbox processed the first twelve alone
    assert [sku for sku, _ in sandbox.updates] == [s for s in SKUS[:12] if s != "FEED-03"]


@pytest.mark.parametrize("ending", ["FATAL", "CANCELLED"])
def test_amazon_feed_that_ends_badly_is_retryable(adapter, sandbox, ending):
    sandbox.configure(feed_outcome=ending)

    result = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    assert result.outcome == Outcome.RETRYABLE
    assert f"ended {ending}" in result.error
    assert sandbox.updates == []


def test_amazon_feed_throttled_or_failing_before_submission_is_the_calls_outcome(adapter, sandbox):
    sandbox.configure(throttle_per_second=0)  # createFeed answers 429
    throttled = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))
    assert throttled.outcome == Outcome.THROTTLED
    assert throttled.http_status == 429
    assert throttled.retry_after == pytest.approx(1 / (0.0083 * 0.8))

    sandbox.configure(throttle_per_second=None, error_ratio=1)
    failing = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))
    assert failing.outcome == Outcome.RETRYABLE
    assert failing.http_status == 500

    sandbox.configure(error_ratio=0)
    sandbox.expire_tokens()
    expired = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))
    assert (expired.outcome, expired.token_expired) == (Outcome.AUTH, True)
    assert sandbox.updates == []


def test_amazon_feed_rate_named_by_amazon_paces_the_adapter(adapter, sandbox):
    sandbox.configure(rate_limits={"createFeed": [0.0125, 40]})

    adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))

    assert adapter.client.rates["createFeed"] == 0.0125
    assert adapter.client.limits("createFeed") == (0.0125, 15)


def test_amazon_feed_batches_hold_at_most_25000_messages(adapter):
    many = [
        StockUpdate(listing_id=n, keys={"seller_sku": str(n)}, quantity=1) for n in range(30_001)
    ]

    assert [len(b) for b in adapter.batches(many, 100_000)] == [25_000, 5_001]
    assert AmazonAdapter.default_batch_size == 5000


class _Response:
    def __init__(self, content: bytes) -> None:
        self.status_code = 200
        self.content = content


class _Downloader:
    def __init__(self, content: bytes) -> None:
        self.content = content

    def _request(self, method: str, url: str):
        return _Response(self.content), 1


def _gzip_of_zeros(size: int) -> bytes:
    """A gzip stream of `size` zero bytes, built piece by piece (never `size` in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, packer.flush()])


def test_amazon_gzip_report_is_inflated_as_a_stream_within_the_limit(monkeypatch):
    located = {"url": "https://reports.test/r", "compressionAlgorithm": "GZIP"}
    # a small report reads
    small = gzip.compress(json.dumps({"issues": [], "summary": {"errors": 0}}).encode())
    assert report_download(_Downloader(small), located) == {"issues": [], "summary": {"errors": 0}}

    # a gzip bomb (a few hundred kilobytes inflating to 512 MB) is too big, read no further
    # than the limit: the memory used stays near the limit, not the inflated size
    monkeypatch.setattr(feed_report, "REPORT_MAX_BYTES", 4 * 1024 * 1024)
    bomb = _gzip_of_zeros(512 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(ReportUnreadable, match="too big"):
            report_download(_Downloader(bomb), located)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024
    # and a report exactly at the limit still reads; a damaged stream is unreadable
    exact = b'{"a":"' + b"x" * (4 * 1024 * 1024 - 8) + b'"}'
    assert len(exact) == 4 * 1024 * 1024
    assert report_download(_Downloader(gzip.compress(exact)), located)["a"][:3] == "xxx"
    with pytest.raises(ReportUnreadable, match="unreadable"):
        report_download(_Downloader(small[:-12] + b"garbage....."), located)
    with pytest.raises(ReportUnreadable, match="unreadable"):
        report_download(_Downloader(b"not gzip at all"), located)


def test_amazon_feed_document_and_report_reading_hand_built():
    document = json.loads(
        feed_document(
            seller_id="S1", product_type="SHOES", op="merge", quantities=[("a", 1), ("b", 0)]
        )
    )
    report = {
        "issues": [
            {"messageId": 2, "code": "1", "severity": "ERROR", "message": "bad"},
            {"messageId": 2, "code": "2", "severity": "ERROR", "message": "worse"},
            {"messageId": 1, "code": "3", "severity": "WARNING", "message": "fine"},
            {"code": "4", "severity": "ERROR", "message": "no message id"},
            "junk",
        ]
    }

    assert document["header"]["sellerId"] == "S1"
    assert [(m["sku"], m["patches"][0]["op"], m["productType"]) for m in document["messages"]] == [
        ("a", "merge", "SHOES"),
        ("b", "merge", "SHOES"),
    ]
    assert report_failures(report) == {2: "1: bad; 2: worse"}
    # the issue naming no message (or one the feed did not hold) is the whole feed's
    assert report_feed_errors(report, 2) == ["4: no message id"]
    assert report_feed_errors(report, 1) == ["1: bad", "2: worse", "4: no message id"]
    # a summary falling short of the messages sent confirms none of them
    counts = {"messagesProcessed": 2, "messagesAccepted": 1}
    assert report_shortfall({"summary": counts}, 2, 1) == ""
    assert report_shortfall({"summary": counts}, 2, 0) == (
        "the report counts 1 messages accepted, 2 were sent without an issue"
    )
    assert report_shortfall({"summary": counts}, 3, 0) == (
        "the report counts 2 of 3 messages processed"
    )
    assert report_shortfall({}, 2, 0) == "the report's summary has no message counts"


def test_amazon_sandbox_upload_needs_the_declared_content_type_and_its_signature(server, sandbox):
    token = sandbox.credentials()["access_token"]
    created = requests.post(
        f"{server.url}/feeds/2021-06-30/documents",
        json={"contentType": "application/json; charset=UTF-8"},
        headers={"x-amz-access-token": token},
        timeout=5,
    )
    url = created.json()["url"]

    wrong_type = requests.put(url, data=b"{}", headers={"content-type": "text/plain"}, timeout=5)
    wrong_signature = requests.put(
        url.split("?")[0] + "?X-Amz-Signature=0",
        data=b"{}",
        headers={"content-type": "application/json; charset=UTF-8"},
        timeout=5,
    )
    not_uploaded = requests.post(
        f"{server.url}/feeds/2021-06-30/feeds",
        json={
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "inputFeedDocumentId": created.json()["feedDocumentId"],
        },
        headers={"x-amz-access-token": token},
        timeout=5,
    )

    assert created.status_code == 201
    assert (wrong_type.status_code, wrong_signature.status_code) == (403, 403)
    assert not_uploaded.status_code == 400


def test_amazon_sandbox_feed_with_another_sellers_header_is_fatal(server, sandbox):
    token = sandbox.credentials()["access_token"]
    auth = {"x-amz-access-token": token}
    doc = requests.post(
        f"{server.url}/feeds/2021-06-30/documents",
        json={"contentType": "application/json"},
        headers=auth,
        timeout=5,
    ).json()
    body = feed_document(
        seller_id="A0OTHER", product_type="PRODUCT", op="replace", quantities=[("FEED-00", 9)]
    )
    requests.put(doc["url"], data=body, headers={"content-type": "application/json"}, timeout=5)
    feed = requests.post(
        f"{server.url}/feeds/2021-06-30/feeds",
        json={
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "inputFeedDocumentId": doc["feedDocumentId"],
        },
        headers=auth,
        timeout=5,
    ).json()

    status = requests.get(
        f"{server.url}/feeds/2021-06-30/feeds/{feed['feedId']}", headers=auth, timeout=5
    ).json()
    located = requests.get(
        f"{server.url}/feeds/2021-06-30/documents/{status['resultFeedDocumentId']}",
        headers=auth,
        timeout=5,
    ).json()
    report = requests.get(located["url"], timeout=5).content

    assert status["processingStatus"] == "FATAL"
    assert json.loads(report)["summary"]["messagesProcessed"] == 0
    assert sandbox.quantity({"seller_sku": "FEED-00"}) == 1
