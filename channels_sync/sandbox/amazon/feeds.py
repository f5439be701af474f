"""The Amazon sandbox's Feeds API v2021-06-30, for `JSON_LISTINGS_FEED`.

- `POST /feeds/2021-06-30/documents` `{"contentType"}` -> 201 `{feedDocumentId, url}`; the
  url is this sandbox's `/feeds-upload/{id}?X-Amz-Signature=..` (a pre-signed storage URL
  stand-in), taking one `PUT` with the declared Content-Type (403 otherwise).
- `POST /feeds/2021-06-30/feeds` `{"feedType": "JSON_LISTINGS_FEED", "marketplaceIds",
  "inputFeedDocumentId"}` -> 202 `{feedId}` (the document must be uploaded). The shared
  faults apply here (`gate()`).
- `GET /feeds/2021-06-30/feeds/{feedId}` -> `processingStatus` `IN_QUEUE`, `IN_PROGRESS`
  (after half the `feed_delay`), then `feed_outcome`, naming its `resultFeedDocumentId`.
  Feeds are processed on the sandbox's own clock, `feed_delay` seconds after their creation
  (a timer), whether anybody asks about them or not: a feed its sender stopped waiting for
  still lands, as on Amazon. A `DONE` feed is applied once.
- `GET /feeds/2021-06-30/documents/{id}` -> `{feedDocumentId, url}` (with
  `compressionAlgorithm: GZIP` under `report_gzip`); the url serves the processing report:
  `{"header": {sellerId, version, feedId}, "issues": [{messageId, code, severity, message}],
  "summary": {errors, warnings, messagesProcessed, messagesAccepted, messagesInvalid}}`.

Messages are checked with this module's own reading of the Listings Feed schema v2:
`header.sellerId` must be the seller's and `version` "2.0" (else the feed is `FATAL`), at
most 25,000 messages with unique `messageId`s; a message must be a `PATCH` or
`PARTIAL_UPDATE` with a `productType` and `patches`. A message for an unknown SKU, a SKU in
`reject`, or with a bad quantity gets an `ERROR` issue; the others are applied.

`feed_report` makes a `DONE` feed's report answer as Amazon's can: `feed_error` applies
nothing and reports one `ERROR` issue without a `messageId` (an error of the feed as a
whole); `short` processes only the first half of the messages, the summary counting those.
"""

import gzip
import json
import re
import secrets
import threading
import time
from typing import Any

from channels_sync.sandbox.amazon.common import header, iso
from channels_sync.sandbox.amazon.listings import ISSUE_REJECTED, QUANTITY_PATH, quantity_of
from core.sandbox import SandboxRequest, SandboxResponse

FEEDS = "/feeds/2021-06-30"
DOCUMENT = re.compile(rf"^{FEEDS}/documents/(?P<id>[^/]+)$")
FEED = re.compile(rf"^{FEEDS}/feeds/(?P<id>[^/]+)$")
UPLOAD = re.compile(r"^/feeds-upload/(?P<id>[^/]+)$")
DOWNLOAD = re.compile(r"^/feeds-download/(?P<id>[^/]+)$")
MAX_MESSAGES = 25_000
ISSUE_UNKNOWN_SKU = "90001003"  # made up: no listing with this SKU
ISSUE_BAD_MESSAGE = "90001004"  # made up: the message does not follow the schema
ISSUE_FEED = "90000900"  # made up: the feed as a whole could not be processed


class FeedRoutes:
    """Routes of the Feeds API (mixed into `AmazonSandbox`)."""

    def feed_route(self, request: SandboxRequest) -> SandboxResponse | None:
        path, method = request.path, request.method
        if method == "PUT" and (match := UPLOAD.match(path)):
            return self._upload(request, match["id"])
        if method == "GET" and (match := DOWNLOAD.match(path)):
            return self._download(request, match["id"])
        if method == "POST" and path == f"{FEEDS}/documents":
            return self.checked(request, "createFeedDocument") or self._document_create(request)
        if method == "POST" and path == f"{FEEDS}/feeds":
            return self.checked(request, "createFeed") or self._feed_create(request)
        if method == "GET" and (match := FEED.match(path)):
            return self.checked(request, "getFeed") or self._feed_get(match["id"])
        if method == "GET" and (match := DOCUMENT.match(path)):
            return self.checked(request, "getFeedDocument") or self._document_get(
                request, match["id"]
            )
        return None

    # --- documents ----------------------------------------------------------------------------

    def _document_create(self, request: SandboxRequest) -> SandboxResponse:
        try:
            body = request.json()
        except ValueError:
            body = None
        content_type = body.get("contentType") if isinstance(body, dict) else None
        if not isinstance(content_type, str) or not content_type:
            return self.error(400, "InvalidInput", "contentType is required.")
        document_id = f"amzn1.tortuga.4.na.{secrets.token_hex(12)}"
        signature = secrets.token_hex(16)
        with self._lock:
            self.documents[document_id] = {
                "content_type": content_type,
                "signature": signature,
                "content": None,
                "gzip": False,
            }
        url = f"{self.base_url(request)}/feeds-upload/{document_id}?X-Amz-Signature={signature}"
        return self.answer(201, {"feedDocumentId": document_id, "url": url}, "createFeedDocument")

    def _upload(self, request: SandboxRequest, document_id: str) -> SandboxResponse:
        document = self.documents.get(document_id)
        signature = (request.query.get("X-Amz-Signature") or [""])[-1]
        if document is None or not secrets.compare_digest(signature, document["signature"]):
            return SandboxResponse(
                403, "<Error><Code>SignatureDoesNotMatch</Code></Error>", {}, "application/xml"
            )
        if header(request, "Content-Type") != document["content_type"]:
            # The pre-signed URL covers the Content-Type declared when it was made.
            return SandboxResponse(
                403, "<Error><Code>SignatureDoesNotMatch</Code></Error>", {}, "application/xml"
            )
        with self._lock:
            document["content"] = request.body
        return SandboxResponse(200, b"", {}, "text/plain")

    def _document_get(self, request: SandboxRequest, document_id: str) -> SandboxResponse:
        document = self.documents.get(document_id)
        if document is None or not document.get("report"):
            return self.error(404, "NotFound", f"No feed document {document_id[:80]}")
        body = {
            "feedDocumentId": document_id,
            "url": f"{self.base_url(request)}/feeds-download/{document_id}"
            f"?X-Amz-Signature={document['signature']}",
        }
        if document["gzip"]:
            body["compressionAlgorithm"] = "GZIP"
        return self.answer(200, body, "getFeedDocument")

    def _download(self, request: SandboxRequest, document_id: str) -> SandboxResponse:
        document = self.documents.get(document_id)
        signature = (request.query.get("X-Amz-Signature") or [""])[-1]
        if document is None or not secrets.compare_digest(signature, document["signature"]):
            return SandboxResponse(
                403, "<Error><Code>AccessDenied</Code></Error>", {}, "application/xml"
            )
        return SandboxResponse(200, document["content"] or b"", {}, "application/octet-stream")

    # --- feeds --------------------------------------------------------------------------------

    def _feed_create(self, request: SandboxRequest) -> SandboxResponse:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("feedType") != "JSON_LISTINGS_FEED":
            return self.error(400, "InvalidInput", "feedType must be JSON_LISTINGS_FEED here.")
        if body.get("marketplaceIds") != [self.marketplace_id]:
            return self.error(400, "InvalidInput", "Invalid marketplaceIds.")
        document = self.documents.get(str(body.get("inputFeedDocumentId") or ""))
        if document is None or document["content"] is None:
            return self.error(
                400, "InvalidInput", "inputFeedDocumentId names no uploaded document."
            )
        fate = self.gate()
        if fate == "throttle":
            return self.throttled()
        if fate == "error":
            return self.error(500, "InternalFailure", "We encountered an internal error.")
        feed_id = str(50_000_000_000 + secrets.randbelow(10**10))
        delay = float(self.extra["feed_delay"])
        feed = {
            "document_id": body["inputFeedDocumentId"],
            "created": time.time(),
            "started": time.monotonic(),
            "delay": delay,
            "outcome": self.extra["feed_outcome"],
            "report": self.extra["feed_report"],
            "status": "IN_QUEUE",
            "result": None,
        }
        with self._lock:
            self.feeds[feed_id] = feed
        if delay <= 0:
            self._feed_finish(feed_id, feed)
        else:
            # Amazon's own clock: the feed is processed whether or not it is asked about.
            timer = threading.Timer(delay, self._feed_finish, args=(feed_id, feed))
            timer.daemon = True
            with self._lock:
                self.feed_timers.append(timer)
            timer.start()
        return self.answer(202, {"feedId": feed_id}, "createFeed")

    def feed_timers_cancel(self) -> None:
        """Stop the timers of feeds not processed yet (a reset forgets them)."""
        with self._lock:
            timers, self.feed_timers = list(getattr(self, "feed_timers", [])), []
        for timer in timers:
            timer.cancel()

    def _feed_get(self, feed_id: str) -> SandboxResponse:
        with self._lock:
            feed = self.feeds.get(feed_id)
        if feed is None:
            return self.error(404, "NotFound", f"No feed {feed_id[:40]}")
        elapsed = time.monotonic() - feed["started"]
        if feed["status"] in ("IN_QUEUE", "IN_PROGRESS"):
            if elapsed >= feed["delay"]:
                # Its timer is due this very moment: the answer must not lag the clock.
                self._feed_finish(feed_id, feed)
            elif elapsed >= feed["delay"] / 2:
                with self._lock:
                    if feed["status"] == "IN_QUEUE":
                        feed["status"] = "IN_PROGRESS"
        body = {
            "feedId": feed_id,
            "feedType": "JSON_LISTINGS_FEED",
            "marketplaceIds": [self.marketplace_id],
            "createdTime": iso(feed["created"]),
            # A feed being finished by its timer is still processing, as far as anyone sees.
            "processingStatus": "IN_PROGRESS" if feed["status"] == "FINISHING" else feed["status"],
        }
        if feed["result"]:
            body["resultFeedDocumentId"] = feed["result"]
        return self.answer(200, body, "getFeed")

    def _feed_finish(self, feed_id: str, feed: dict[str, Any]) -> None:
        """End the feed as configured: a DONE feed is applied and gets its report."""
        with self._lock:
            pending = feed["status"] in ("IN_QUEUE", "IN_PROGRESS")
            if not pending or self.feeds.get(feed_id) is not feed:  # done, or from before a reset
                return
            outcome = feed["outcome"]
            feed["status"] = "FINISHING"
            content = self.documents[feed["document_id"]]["content"]
        if outcome == "CANCELLED":
            feed["status"] = outcome
            return
        report = self._process(feed_id, content, feed["report"]) if outcome == "DONE" else None
        if report is None:
            feed["status"] = "FATAL"
            report = {
                "header": {"sellerId": self.seller_id, "version": "2.0", "feedId": feed_id},
                "issues": [
                    {
                        "code": "90001000",
                        "severity": "ERROR",
                        "message": "The feed could not be processed.",
                    }
                ],
                "summary": {
                    "errors": 1,
                    "warnings": 0,
                    "messagesProcessed": 0,
                    "messagesAccepted": 0,
                    "messagesInvalid": 0,
                },
            }
        result_id = f"amzn1.tortuga.4.na.{secrets.token_hex(12)}"
        payload = json.dumps(report).encode()
        compressed = bool(self.extra["report_gzip"])
        with self._lock:
            self.documents[result_id] = {
                "content_type": "application/json",
                "signature": secrets.token_hex(16),
                "content": gzip.compress(payload) if compressed else payload,
                "gzip": compressed,
                "report": True,
            }
            feed["result"] = result_id
            if feed["status"] == "FINISHING":
                feed["status"] = outcome

    def _process(self, feed_id: str, content: bytes, kind: str) -> dict[str, Any] | None:
        """Apply a feed document's messages; its processing report (None: FATAL). `kind`:
        see `feed_report` in the module's doc."""
        try:
            document = json.loads(content)
        except (ValueError, RecursionError):
            return None
        head = document.get("header") if isinstance(document, dict) else None
        messages = document.get("messages") if isinstance(document, dict) else None
        if (
            not isinstance(head, dict)
            or head.get("sellerId") != self.seller_id
            or head.get("version") != "2.0"
            or not isinstance(messages, list)
            or not 1 <= len(messages) <= MAX_MESSAGES
        ):
            return None
        ids = [m.get("messageId") for m in messages if isinstance(m, dict)]
        if len(ids) != len(messages) or len(set(map(str, ids))) != len(ids):
            return None
        header = {"sellerId": self.seller_id, "version": "2.0", "feedId": feed_id}
        if kind == "feed_error":
            issue = {
                "code": ISSUE_FEED,
                "severity": "ERROR",
                "message": "The feed could not be processed: the document is malformed.",
            }
            summary = {"errors": 1, "warnings": 0, "messagesProcessed": 0}
            summary |= {"messagesAccepted": 0, "messagesInvalid": 0}
            return {"header": header, "issues": [issue], "summary": summary}
        if kind == "short":
            messages = messages[: len(messages) // 2]
        issues = []
        for message in messages:
            problem = self._message_apply(message)
            if problem is not None:
                issues.append(
                    {
                        "messageId": message["messageId"],
                        "code": problem[0],
                        "severity": "ERROR",
                        "message": problem[1],
                        "attributeNames": ["fulfillment_availability"],
                    }
                )
        with self._lock:
            self.counts["items_rejected"] += len(issues)
        return {
            "header": header,
            "issues": issues,
            "summary": {
                "errors": len(issues),
                "warnings": 0,
                "messagesProcessed": len(messages),
                "messagesAccepted": len(messages) - len(issues),
                "messagesInvalid": len(issues),
            },
        }

    def _message_apply(self, message: dict[str, Any]) -> tuple[str, str] | None:
        """Apply one message; (issue code, message) when it is refused."""
        sku = message.get("sku")
        patches = message.get("patches")
        if (
            not isinstance(sku, str)
            or not sku
            or message.get("operationType") not in ("PATCH", "PARTIAL_UPDATE")
            or not isinstance(message.get("productType"), str)
            or not message["productType"]
            or not isinstance(patches, list)
            or not patches
        ):
            return ISSUE_BAD_MESSAGE, "The message does not follow the listings feed schema."
        keys = {"seller_sku": sku}
        if self.quantity(keys) is None:
            return ISSUE_UNKNOWN_SKU, f"SKU '{sku[:80]}' does not exist."
        if self.is_rejected(keys):
            return ISSUE_REJECTED, "The offer for this SKU is locked and cannot be updated."
        quantity = None
        for patch in patches:
            if isinstance(patch, dict) and patch.get("path") == QUANTITY_PATH:
                quantity = quantity_of(patch)
                if quantity is None:
                    return ISSUE_BAD_MESSAGE, "'quantity' must be a whole number of 0 or more."
        if quantity is not None:
            with self._lock:
                self.stock[self.key_of(keys)] = quantity
                self.updates.append((sku, quantity))
        return None
