"""A fake Amazon Selling Partner API (one seller, one marketplace) and its Login with Amazon.

Routes (the SP-API references; see `listings`, `feeds` and `orders` for each):

- `POST /auth/o2/token` (form): `grant_type=refresh_token` with `refresh_token`, `client_id`,
  `client_secret` answers `{access_token, refresh_token, token_type, expires_in}`; refusals
  are OAuth errors (`invalid_client` 401, `invalid_grant` / `invalid_request` /
  `unsupported_grant_type` 400).
- Listings Items: `PATCH` and `GET /listings/2021-08-01/items/{sellerId}/{sku}`.
- Feeds: `POST /feeds/2021-06-30/documents`, the upload and download URLs it hands out
  (served here: `/feeds-upload/...`, `/feeds-download/...`), `POST /feeds/2021-06-30/feeds`,
  `GET /feeds/2021-06-30/feeds/{feedId}`, `GET /feeds/2021-06-30/documents/{id}`.
- Orders: `GET /orders/v0/orders`, `/orders/v0/orders/{id}`, `/orders/v0/orders/{id}/orderItems`.

Every SP-API call is checked with this module's own code: the `x-amz-access-token` header
(403 `Unauthorized`, "... has expired." for an expired token, "... is revoked, malformed or
invalid." otherwise), a well-formed `x-amz-date` when sent, the seller id in the path and the
marketplace id. Each operation has its own token bucket at Amazon's documented rate and burst
(`rate_limits` option overrides them): past it the answer is 429 `QuotaExceeded` with only
`x-amzn-RequestId`; other answers carry `x-amzn-RateLimit-Limit` (the bucket's rate). Every
call is timed per operation (`op_times`: accepted calls, `op_throttled`: 429s).

The shared faults (`configure`) apply to the stock calls, patchListingsItem and createFeed
(`gate()`), and to getListingsItem (`gate(read=True)`); `reject` lists SKUs whose updates are
refused (an `INVALID` patch, an `ERROR` issue in the feed report). Feeds take `feed_delay`
seconds from their creation to process, on the sandbox's clock (`IN_QUEUE`, then
`IN_PROGRESS` after half of it), and end as `feed_outcome` says (`DONE`, `FATAL`,
`CANCELLED`); `feed_report` shapes a `DONE` feed's report (`normal`, `feed_error`, `short`);
`report_gzip` compresses the reports.
Amazon sends no HTTP notifications (SQS and EventBridge only), so `notify` delivers nothing:
orders are found by polling. `order_age` stamps new orders and changes that many seconds in
the past (getOrders shows nothing newer than two minutes).
"""

import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from channels_sync.sandbox.amazon.common import header
from channels_sync.sandbox.amazon.feeds import FeedRoutes
from channels_sync.sandbox.amazon.listings import ListingRoutes
from channels_sync.sandbox.amazon.orders import OrderRoutes
from channels_sync.sandbox.base import MarketplaceSandbox
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

TOKEN_PATH = "/auth/o2/token"  # noqa: S105 - a path
TOKEN_LIFETIME = 3600
AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
# Documented (rate per second, burst) of each operation.
RATE_LIMITS: dict[str, tuple[float, int]] = {
    "patchListingsItem": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "createFeedDocument": (0.5, 15),
    "createFeed": (0.0083, 15),
    "getFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "getOrders": (0.0167, 20),
    "getOrder": (0.5, 30),
    "getOrderItems": (0.5, 30),
}
_EXTRA_OPTIONS = {
    "rate_limits": {},
    "feed_delay": 0.0,
    "feed_outcome": "DONE",
    "feed_report": "normal",
    "report_gzip": False,
    "order_age": 0.0,
    "orders_page_size": None,
    "items_page_size": None,
}
FEED_OUTCOMES = ("DONE", "FATAL", "CANCELLED")
FEED_REPORTS = ("normal", "feed_error", "short")


class AmazonSandbox(ListingRoutes, FeedRoutes, OrderRoutes, MarketplaceSandbox):
    """Amazon SP-API for one seller: listings by SKU, feeds, orders, LWA tokens, faults."""

    name = "amazon"
    key_names = ("seller_sku",)
    unpaid_statuses = ("Pending", "PendingAvailability")
    currency = "USD"

    def __init__(
        self,
        *,
        client_id: str = "amzn1.application-oa2-client.sandbox",
        client_secret: str = "sandbox-lwa-client-secret",  # noqa: S107 - a fake's secret
        seller_id: str = "A2SANDBOXSELLER",
        marketplace_id: str = "ATVPDKIKX0DER",
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.seller_id = seller_id
        self.marketplace_id = marketplace_id
        self._amazon_state()

    def _amazon_state(self) -> None:
        self.extra: dict[str, Any] = {
            key: dict(value) if isinstance(value, dict) else value
            for key, value in _EXTRA_OPTIONS.items()
        }
        self.options["token_lifetime"] = TOKEN_LIFETIME
        self.buckets: dict[str, tuple[float, float]] = {}
        self.op_times: dict[str, list[float]] = {}
        self.op_throttled: dict[str, int] = {}
        self.updates: list[tuple[str, int]] = []  # (sku, quantity) applied, in order
        self.patch_bodies: list[dict[str, Any]] = []
        self.documents: dict[str, dict[str, Any]] = {}
        self.feeds: dict[str, dict[str, Any]] = {}
        self.feed_timers: list[Any] = []
        self.page_tokens: dict[str, tuple[dict[str, Any], int]] = {}
        self.fulfillment: dict[str, str] = {}  # order id -> MFN | AFN

    def reset(self) -> None:
        self.feed_timers_cancel()
        super().reset()
        with self._lock:
            self._amazon_state()

    def configure(self, **options: Any) -> dict:
        """The shared options, and `rate_limits` ({operation: [rate, burst]}), `feed_delay`
        (seconds), `feed_outcome`, `feed_report`, `report_gzip`, `order_age` (seconds),
        `orders_page_size` and `items_page_size` (the most orders / items a page holds; None:
        as asked)."""
        extra = {key: options.pop(key) for key in list(options) if key in _EXTRA_OPTIONS}
        limits = extra.get("rate_limits")
        if limits is not None:
            if not isinstance(limits, dict) or any(op not in RATE_LIMITS for op in limits):
                raise ValueError(f"rate_limits names operations of {sorted(RATE_LIMITS)}")
            for op, pair in limits.items():
                rate, burst = pair
                if float(rate) <= 0 or int(burst) < 1:
                    raise ValueError(f"rate_limits[{op}] must be [rate > 0, burst >= 1]")
        if extra.get("feed_outcome", "DONE") not in FEED_OUTCOMES:
            raise ValueError(f"feed_outcome must be one of {', '.join(FEED_OUTCOMES)}")
        if extra.get("feed_report", "normal") not in FEED_REPORTS:
            raise ValueError(f"feed_report must be one of {', '.join(FEED_REPORTS)}")
        for name in ("orders_page_size", "items_page_size"):
            size = extra.get(name)
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 1
            ):
                raise ValueError(f"{name} must be a positive integer or null")
        configured = super().configure(**options)
        with self._lock:
            self.extra.update(extra)
            if limits is not None:
                self.buckets.clear()
        return {**configured, **self.extra}

    def credentials(self) -> dict[str, str]:
        """Fresh channel credentials: this application and seller, newly issued tokens."""
        access, refresh, lifetime = self.issue_tokens()
        return {
            "lwa_client_id": self.client_id,
            "lwa_client_secret": self.client_secret,
            "refresh_token": refresh,
            "seller_id": self.seller_id,
            "marketplace_id": self.marketplace_id,
            "access_token": access,
            "access_token_expires_at": datetime.fromtimestamp(
                time.time() + lifetime, tz=UTC
            ).isoformat(),
        }

    def issue_tokens(self) -> tuple[str, str, int]:
        """LWA-looking tokens (`Atza|...`, `Atzr|...`)."""
        access, refresh = f"Atza|{secrets.token_hex(16)}", f"Atzr|{secrets.token_hex(16)}"
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
            self.refresh_tokens.add(refresh)
        return access, refresh, lifetime

    def describe(self) -> str:
        return (
            f"{self.name}: POST {TOKEN_PATH}, PATCH/GET /listings/2021-08-01/items/"
            f"{self.seller_id}/{{sku}}, /feeds/2021-06-30/..., /orders/v0/orders "
            f"(marketplace {self.marketplace_id})"
        )

    # --- rate limits --------------------------------------------------------------------------

    def limits(self, operation: str) -> tuple[float, int]:
        rate, burst = self.extra["rate_limits"].get(operation, RATE_LIMITS[operation])
        return float(rate), int(burst)

    def quota_take(self, operation: str) -> bool:
        """Take a token of the operation's bucket; False (counted) when it is empty."""
        rate, burst = self.limits(operation)
        now = time.monotonic()
        with self._lock:
            tokens, at = self.buckets.get(operation, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate)
            if tokens < 1.0:
                self.buckets[operation] = (tokens, now)
                self.op_throttled[operation] = self.op_throttled.get(operation, 0) + 1
                return False
            self.buckets[operation] = (tokens - 1.0, now)
            self.op_times.setdefault(operation, []).append(now)
        return True

    def max_in_window(self, operation: str, window: float = 1.0) -> int:
        """The most accepted calls of an operation seen in any `window` seconds."""
        times = sorted(self.op_times.get(operation, []))
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- answers ----------------------------------------------------------------------------

    def answer(self, status: int, data: Any, operation: str) -> SandboxResponse:
        """A successful (or item-level) answer, naming the operation's rate."""
        rate, _burst = self.limits(operation)
        return SandboxResponse.json(
            status,
            data,
            {"x-amzn-RequestId": str(uuid.uuid4()), "x-amzn-RateLimit-Limit": f"{rate:g}"},
        )

    @staticmethod
    def error(status: int, code: str, message: str, details: str = "") -> SandboxResponse:
        body = {"errors": [{"code": code, "message": message, "details": details}]}
        return SandboxResponse.json(status, body, {"x-amzn-RequestId": str(uuid.uuid4())})

    def throttled(self) -> SandboxResponse:
        return self.error(
            429, "QuotaExceeded", "You exceeded your quota for the requested resource."
        )

    def checked(self, request: SandboxRequest, operation: str) -> SandboxResponse | None:
        """The refusal of a call's token, date or quota, if any (the quota is taken)."""
        state = self.token_state(header(request, "x-amz-access-token") or None)
        if state != "ok":
            self.count("auth_refused")
            details = (
                "The access token you provided has expired."
                if state == "expired"
                else "The access token you provided is revoked, malformed or invalid."
            )
            return self.error(
                403, "Unauthorized", "Access to requested resource is denied.", details
            )
        date = header(request, "x-amz-date")
        if date and not AMZ_DATE.match(date):
            return self.error(400, "InvalidInput", f"Invalid x-amz-date header: {date[:40]}")
        if not self.quota_take(operation):
            return self.throttled()
        return None

    def marketplace_refused(self, request: SandboxRequest, name: str) -> SandboxResponse | None:
        wanted = [v for value in request.query.get(name, []) for v in value.split(",") if v]
        if wanted != [self.marketplace_id]:
            return self.error(400, "InvalidInput", f"Invalid {name}: {','.join(wanted)[:80]}")
        return None

    def base_url(self, request: SandboxRequest) -> str:
        return f"http://{header(request, 'Host')}"

    # --- LWA ----------------------------------------------------------------------------------

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        """Login with Amazon's token endpoint (refresh_token grant only)."""
        form = {
            key: values[-1]
            for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()
        }
        if not header(request, "Content-Type").startswith("application/x-www-form-urlencoded"):
            return _oauth(400, "invalid_request", "The request must be form-encoded")
        if form.get("grant_type") != "refresh_token":
            return _oauth(400, "unsupported_grant_type", "Only refresh_token is supported here")
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            self.count("auth_refused")
            return _oauth(401, "invalid_client", "Client authentication failed")
        refresh = form.get("refresh_token", "")
        if not refresh:
            return _oauth(
                400,
                "invalid_request",
                "The request is missing a required parameter : refresh_token",
            )
        if not self.refresh_consume(refresh, single_use=False):
            self.count("auth_refused")
            return _oauth(
                400, "invalid_grant", "The request has an invalid grant parameter : refresh_token"
            )
        access = f"Atza|{secrets.token_hex(16)}"
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
        # LWA answers the same refresh token: it does not rotate.
        return SandboxResponse.json(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "bearer",
                "expires_in": lifetime,
            },
        )

    # --- routes -------------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == TOKEN_PATH and request.method == "POST":
            return self._token(request)
        for route in (self.listing_route, self.feed_route, self.order_route):
            response = route(request)
            if response is not None:
                return response
        return self.error(404, "NotFound", f"No route {request.method} {request.path}")


def _oauth(status: int, error: str, description: str) -> SandboxResponse:
    return SandboxResponse.json(status, {"error": error, "error_description": description})


register_sandbox("amazon", AmazonSandbox)
