"""Amazon Feeds API v2021-06-30: many quantities in one `JSON_LISTINGS_FEED`.

The steps ("Feeds API v2021-06-30 use case guide"; "Listings Feed Message Schema v2"):

1. `POST /feeds/2021-06-30/documents` `{"contentType"}` (createFeedDocument) answers
   `feedDocumentId` and a pre-signed `url`;
2. `PUT` the JSON document to that `url` with the same Content-Type (no SP-API token);
3. `POST /feeds/2021-06-30/feeds` `{"feedType": "JSON_LISTINGS_FEED", "marketplaceIds",
   "inputFeedDocumentId"}` (createFeed) answers `feedId`;
4. `GET /feeds/2021-06-30/feeds/{feedId}` (getFeed) until `processingStatus` is `DONE`,
   `FATAL` or `CANCELLED` (`IN_QUEUE`, `IN_PROGRESS` before);
5. `GET /feeds/2021-06-30/documents/{resultFeedDocumentId}` (getFeedDocument) answers the
   processing report's `url` (and `compressionAlgorithm: GZIP` when it is compressed). The
   report lists `issues[]` by `messageId` (severity `ERROR`: that message failed) and a
   `summary` (`messagesProcessed`, `messagesAccepted`, `messagesInvalid`, ...).

A document holds at most 25,000 messages (`messages` maxItems). Each message is a `PATCH` of
one SKU's `fulfillment_availability`, so the feed sets absolute quantities: a feed that has
ended (`FATAL`, `CANCELLED`, or `DONE` with a report that could not be read or that does not
account for its messages) may be sent again, and every such case is `retryable`.

A feed still processing is another matter: Amazon applies it on its own time, so a new feed
(or patch) of the same SKUs sent meanwhile could land first and be overwritten by the older
figures. A submitted feed is therefore remembered (`inflight`) until it is seen ended, and
while one is live nothing of the seller is sent (`feeds_pending`: the push is `throttled`).
"""

import json
import time
from collections.abc import Sequence
from typing import Any

import structlog

from channels_sync.adapters.amazon.client import Answer, SpApiClient, Throttled
from channels_sync.adapters.amazon.feed_report import (
    ReportUnreadable,
    report_download,
    report_failures,
    report_feed_errors,
    report_shortfall,
)
from channels_sync.adapters.amazon.inflight import feed_forget, feed_remember, feeds_inflight
from channels_sync.adapters.amazon.listings import quantity_patch
from channels_sync.adapters.base import (
    CallResult,
    ItemResult,
    Outcome,
    StockUpdate,
    answer_int,
    answer_text,
)
from core.http import OutboundError

logger = structlog.get_logger(__name__)

FEEDS_PATH = "/feeds/2021-06-30"
FEED_TYPE = "JSON_LISTINGS_FEED"
FEED_MAX_MESSAGES = 25_000
CONTENT_TYPE = "application/json; charset=UTF-8"
PENDING_STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS"})
ENDED_STATUSES = frozenset({"FATAL", "CANCELLED"})


class FeedFailed(Exception):
    """A step of the feed failed; `result` is what the push call answers."""

    def __init__(self, result: CallResult) -> None:
        super().__init__(result.error)
        self.result = result


def feed_document(
    *, seller_id: str, product_type: str, op: str, quantities: Sequence[tuple[str, int]]
) -> bytes:
    """The JSON_LISTINGS_FEED document: one PATCH message per (SKU, quantity), messageId
    1, 2, ... in order."""
    messages = [
        {
            "messageId": number,
            "sku": sku,
            "operationType": "PATCH",
            "productType": product_type,
            "patches": [quantity_patch(op=op, quantity=quantity)],
        }
        for number, (sku, quantity) in enumerate(quantities, start=1)
    ]
    document = {
        "header": {"sellerId": seller_id, "version": "2.0", "issueLocale": "en_US"},
        "messages": messages,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def feeds_pending(adapter: Any, client: SpApiClient, *, poll_seconds: float) -> CallResult | None:
    """Ask about the seller's remembered feeds (getFeed each); the push's answer while one
    is live, else None (send).

    A feed `IN_QUEUE` or `IN_PROGRESS`, or one whose status could not be had (a throttle, a
    5xx, a transport failure, an odd answer), makes the push `throttled` with the poll
    interval as retry-after: nothing is sent, no attempt is used. A feed that ended
    (`DONE`, `FATAL`, `CANCELLED`) or whose status Amazon refuses for good (404: it does
    not know the feed; 400 or another non-auth 4xx) is forgotten: what it set, if anything,
    is on Amazon now, and the push sends the current quantities (a refusal would otherwise
    hold every push of the seller for as long as the feed is remembered). An auth refusal
    is the push's answer (the token is refreshed, then the feeds asked again).
    """
    for feed_id in feeds_inflight(adapter):
        try:
            answer = client.call("GET", f"{FEEDS_PATH}/feeds/{feed_id}", operation="getFeed")
        except (Throttled, OutboundError) as exc:
            return _pending(feed_id, f"unanswered ({exc})", poll_seconds)
        if answer.outcome == Outcome.AUTH:
            return _answer_failed(adapter, answer, "getFeed")
        if answer.status == 404 or answer.outcome == Outcome.PERMANENT:
            feed_forget(adapter, feed_id)
            logger.warning(
                "amazon.feed_forgotten",
                feed_id=feed_id,
                http_status=answer.status,
                error=adapter.excerpt(answer.response.content),
            )
            continue
        status = answer_text((answer.body or {}).get("processingStatus")).upper()
        if answer.outcome is None and (status == "DONE" or status in ENDED_STATUSES):
            feed_forget(adapter, feed_id)
            logger.info("amazon.feed_landed", feed_id=feed_id, status=status)
            continue
        return _pending(feed_id, status or f"unanswered (HTTP {answer.status})", poll_seconds)
    return None


def _pending(feed_id: str, status: str, poll_seconds: float) -> CallResult:
    return _failed(
        Outcome.THROTTLED,
        f"feed {feed_id} is still {status}: nothing is sent until it ends (a new update "
        "could land before its older quantities)",
        retry_after=max(poll_seconds, 0.05),
    )


def feed_push(
    adapter: Any,
    client: SpApiClient,
    updates: Sequence[StockUpdate],
    *,
    product_type: str,
    op: str,
    poll_seconds: float,
    max_wait: float,
) -> CallResult:
    """Send the updates as one feed, wait for it (at most `max_wait` s), read its report.

    Never raises. Until the feed is submitted, a throttle, an auth refusal or a failure is
    the call's outcome (nothing was sent). Once submitted the feed is remembered
    (`inflight`): one still queued or running past `max_wait` makes the call `throttled`
    (retry-after `poll_seconds`; `feeds_pending` holds every later push of the seller until
    it ends). A `FATAL` or `CANCELLED` feed, a report that cannot be had and a report with
    an `ERROR` issue of the whole feed (no `messageId`) are `retryable` (the feed ended:
    sending the absolute quantities again is harmless). Otherwise the report gives one item
    result per update: a message with an `ERROR` issue fails that item alone, for good; when
    the summary's counts fall short of the messages sent, the others are retryable items
    (which of them were applied is not said).
    """
    started = time.perf_counter()
    by_sku: dict[str, list[StockUpdate]] = {}
    for update in updates:
        by_sku.setdefault(str(update.keys.get("seller_sku", "")), []).append(update)
    if len(by_sku) > FEED_MAX_MESSAGES:
        return CallResult(
            outcome=Outcome.PERMANENT,
            error=f"a feed holds at most {FEED_MAX_MESSAGES} messages: split with batches()",
        )
    skus = list(by_sku)
    document = feed_document(
        seller_id=str(adapter.credentials.get("seller_id", "")),
        product_type=product_type,
        op=op,
        quantities=[(sku, max(0, int(by_sku[sku][-1].quantity))) for sku in skus],
    )
    try:
        feed_id = _submit(adapter, client, document)
        report = _await_report(adapter, client, feed_id, poll_seconds, max_wait)
    except FeedFailed as exc:
        result = exc.result
        result.latency_ms = int((time.perf_counter() - started) * 1000)
        result.rate_per_second = client.rates.get("createFeed")
        return result
    summary = report.get("summary") if isinstance(report.get("summary"), dict) else {}
    logger.info(
        "amazon.feed_done",
        feed_id=feed_id,
        messages=len(skus),
        processed=answer_int(summary.get("messagesProcessed")),
        accepted=answer_int(summary.get("messagesAccepted")),
        invalid=answer_int(summary.get("messagesInvalid")),
    )
    feed_errors = report_feed_errors(report, len(skus))
    if feed_errors:
        logger.warning("amazon.feed_refused", feed_id=feed_id, errors=feed_errors[:5])
        return CallResult(
            outcome=Outcome.RETRYABLE,
            http_status=200,
            error=f"feed {feed_id} refused as a whole: {'; '.join(feed_errors)}"[:500],
            latency_ms=int((time.perf_counter() - started) * 1000),
            rate_per_second=client.rates.get("createFeed"),
        )
    failures = report_failures(report)
    shortfall = report_shortfall(report, len(skus), len(failures))
    if shortfall:
        logger.warning("amazon.feed_short", feed_id=feed_id, reason=shortfall)
    items = []
    for number, sku in enumerate(skus, start=1):
        error = failures.get(number, "")
        if error:
            item = {"ok": False, "error": f"feed {feed_id} message {number}: {error}"}
        elif shortfall:
            item = {"ok": False, "retryable": True, "error": f"feed {feed_id}: {shortfall}"}
        else:
            item = {"ok": True, "error": ""}
        item["error"] = item["error"][:500]
        items.extend(ItemResult(listing_id=u.listing_id, **item) for u in by_sku[sku])
    failed = [item for item in items if not item.ok]
    return CallResult(
        outcome=Outcome.PARTIAL if failed else Outcome.OK,
        http_status=200,
        items=items,
        error=failed[0].error if failed else "",
        latency_ms=int((time.perf_counter() - started) * 1000),
        rate_per_second=client.rates.get("createFeed"),
    )


def _submit(adapter: Any, client: SpApiClient, document: bytes) -> str:
    """Create the feed document, upload it, create the feed; return the feed id."""
    created = _step(
        adapter,
        client,
        "POST",
        f"{FEEDS_PATH}/documents",
        operation="createFeedDocument",
        json_body={"contentType": CONTENT_TYPE},
    )
    document_id = answer_text(created.body.get("feedDocumentId"))
    url = created.body.get("url")
    if not document_id or not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FeedFailed(_failed(Outcome.RETRYABLE, "createFeedDocument: no document id or url"))
    try:
        response, _ = adapter._request(
            "PUT", url, data=document, headers={"content-type": CONTENT_TYPE}
        )
    except OutboundError as exc:
        raise FeedFailed(_failed(Outcome.RETRYABLE, f"feed upload: {exc}")) from None
    if not 200 <= response.status_code < 300:
        # The upload URL is a pre-signed storage URL: any refusal (expired, a storage
        # hiccup) is solved by a new document.
        raise FeedFailed(
            _failed(
                Outcome.RETRYABLE,
                f"feed upload: HTTP {response.status_code} {adapter.excerpt(response.content)}",
            )
        )
    feed = _step(
        adapter,
        client,
        "POST",
        f"{FEEDS_PATH}/feeds",
        operation="createFeed",
        json_body={
            "feedType": FEED_TYPE,
            "marketplaceIds": [str(adapter.credentials.get("marketplace_id", ""))],
            "inputFeedDocumentId": document_id,
        },
    )
    feed_id = answer_text(feed.body.get("feedId"))
    if not feed_id:
        raise FeedFailed(_failed(Outcome.RETRYABLE, "createFeed: no feedId in the answer"))
    # Live from now on: remembered before anything else can end the call.
    feed_remember(adapter, feed_id)
    logger.info("amazon.feed_created", feed_id=feed_id, document_id=document_id)
    return feed_id


def _await_report(
    adapter: Any, client: SpApiClient, feed_id: str, poll_seconds: float, max_wait: float
) -> dict[str, Any]:
    """Poll the feed until it ends (then forget it), and read its processing report (a JSON
    object). Still live past `max_wait`: `throttled`, the feed stays remembered."""
    deadline = time.monotonic() + max_wait
    while True:
        status, result_id = _feed_status(adapter, client, feed_id)
        if status == "DONE" or status in ENDED_STATUSES:
            feed_forget(adapter, feed_id)
        if status == "DONE":
            break
        if status in ENDED_STATUSES:
            raise FeedFailed(
                _failed(
                    Outcome.RETRYABLE,
                    f"feed {feed_id} ended {status}; it is sent again (absolute quantities)",
                )
            )
        if time.monotonic() + poll_seconds > deadline:
            logger.info("amazon.feed_pending", feed_id=feed_id, status=status, waited=max_wait)
            raise FeedFailed(
                _pending(feed_id, f"{status or 'unanswered'} after {max_wait:.0f} s", poll_seconds)
            )
        time.sleep(poll_seconds)
    if not result_id:
        raise FeedFailed(_failed(Outcome.RETRYABLE, f"feed {feed_id} is DONE without a report"))
    located = _step(
        adapter,
        client,
        "GET",
        f"{FEEDS_PATH}/documents/{result_id}",
        operation="getFeedDocument",
        after_submit=True,
    )
    try:
        return report_download(adapter, located.body)
    except ReportUnreadable as exc:
        raise FeedFailed(_failed(Outcome.RETRYABLE, f"feed {feed_id} report: {exc}")) from None


def _feed_status(adapter: Any, client: SpApiClient, feed_id: str) -> tuple[str, str]:
    """(processingStatus, resultFeedDocumentId) of the feed; ('', '') when this poll got no
    answer (a throttle, a 5xx, a transport failure: the next poll asks again). An auth
    refusal ends the wait (the push refreshes the token and sends the feed again)."""
    try:
        answer = client.call("GET", f"{FEEDS_PATH}/feeds/{feed_id}", operation="getFeed")
    except (Throttled, OutboundError):
        return "", ""
    if answer.outcome == Outcome.AUTH:
        raise FeedFailed(_answer_failed(adapter, answer, "getFeed"))
    if answer.outcome is not None or answer.body is None:
        return "", ""
    return (
        answer_text(answer.body.get("processingStatus")).upper(),
        answer_text(answer.body.get("resultFeedDocumentId")),
    )


def _step(
    adapter: Any,
    client: SpApiClient,
    method: str,
    path: str,
    *,
    operation: str,
    json_body: Any = None,
    after_submit: bool = False,
) -> Answer:
    """One SP-API step of the feed; its answer, or `FeedFailed` with the call's outcome.

    `after_submit`: the feed is submitted already, so a throttle or a refusal can no longer
    be "nothing happened": it is `retryable` (the feed is sent again).
    """
    try:
        answer = client.call(method, path, operation=operation, json_body=json_body)
    except Throttled as exc:
        outcome = Outcome.RETRYABLE if after_submit else Outcome.THROTTLED
        raise FeedFailed(_failed(outcome, f"{operation}: {exc}", retry_after=exc.wait)) from None
    except OutboundError as exc:
        raise FeedFailed(_failed(Outcome.RETRYABLE, f"{operation}: {exc}")) from None
    if answer.outcome is not None:
        result = _answer_failed(adapter, answer, operation)
        if after_submit and result.outcome != Outcome.AUTH:
            result.outcome, result.retry_after = Outcome.RETRYABLE, None
        elif result.outcome == Outcome.THROTTLED:
            result.retry_after = client.throttle_wait(operation)
        raise FeedFailed(result)
    if answer.body is None:
        raise FeedFailed(_failed(Outcome.RETRYABLE, f"{operation}: the answer is no JSON object"))
    return answer


def _answer_failed(adapter: Any, answer: Answer, operation: str) -> CallResult:
    return CallResult(
        outcome=answer.outcome or Outcome.RETRYABLE,
        http_status=answer.status,
        error=f"{operation}: {adapter.excerpt(answer.response.content)}"[:500],
        token_expired=answer.token_expired,
    )


def _failed(outcome: Outcome, error: str, *, retry_after: float | None = None) -> CallResult:
    if outcome != Outcome.THROTTLED:
        retry_after = None
    return CallResult(outcome=outcome, error=error[:500], retry_after=retry_after)
