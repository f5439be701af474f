"""Amazon Selling Partner API: the wire layer every Amazon call goes through.

- Login with Amazon (LWA): `POST {auth}/auth/o2/token` with the form
  `grant_type=refresh_token&refresh_token&client_id&client_secret` answers an `access_token`
  that lives `expires_in` (3600) seconds ("Connecting to the Selling Partner API", step
  "Request a Login with Amazon access token"). Refusals are OAuth errors: `invalid_grant` (the
  refresh token is revoked or wrong), `invalid_client`, `unauthorized_client`.
- Every SP-API call carries the token in `x-amz-access-token` (and `x-amz-date`); no AWS
  Signature Version 4 since 2023-10-02 ("SP-API will no longer require AWS IAM or AWS
  Signature Version 4", SP-API changelog).
- Errors come as `{"errors": [{"code", "message", "details"}]}` ("Error responses and
  exceptions"). HTTP 429 (`QuotaExceeded`) is a throttle; 401/403 (`Unauthorized`, with
  "The access token you provided has expired." when it expired, "... is revoked, malformed or
  invalid." otherwise) refuse the credentials; 5xx are Amazon's own failures.
- Every operation has a token bucket (rate per second, burst) counted per selling partner
  and application ("Usage Plans and Rate Limits"); answers name the rate that applied in
  `x-amzn-RateLimit-Limit` (a 429 does not). No Retry-After is documented: a throttled call
  waits one token's time at the rate in force. Calls are paced here, through the project's
  shared token buckets (`channels_sync.ratelimit`), so every process calling one seller's
  operation draws from one bucket.

A named rate is taken only within [documented / 10, documented * 2] (`RATE_FLOOR_RATIO`,
`RATE_CEILING_RATIO`): a header that says 1e-300 must not stall a worker for hours, nor one
that says 1e300 lift the pace past what Amazon documents. No wait is slept in place for longer
than `INLINE_SLEEP_MAX_SECONDS`: a longer one goes back to the caller as a throttle with the
wait as its retry-after. When the shared cache (Redis) is unreachable the buckets fall back to
this process's memory (`cache.degraded` `amazon_rate_limit`): the calls go on, paced per
process, and a 429 Amazon answers is still a throttle.
"""

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from channels_sync.adapters.base import AdapterError, Outcome, answer_json, answer_text
from channels_sync.ratelimit import rate_limit_take
from core.cache import CACHE_ERRORS, cache_degraded
from core.http import OutboundError

TOKEN_PATH = "/auth/o2/token"  # noqa: S105 - a path, not a secret
RATE_HEADER = "x-amzn-RateLimit-Limit"
USER_AGENT = "SyncStore/1.0 (Language=Python)"

# Documented (rate per second, burst) of each operation used ("Usage Plans and Rate Limits";
# the Listings Items v2021-08-01, Feeds v2021-06-30 and Orders v0 references).
# patchListingsItem's burst comes from the `AMAZON_PATCH_BURST` setting (Amazon lowered it
# from 10 to 5 on 2024-12-18).
OPERATION_LIMITS: dict[str, tuple[float, int]] = {
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
# Calls are paced this far under the quota: the bucket is shared with whatever else the
# seller runs on the same application, and clocks and network delays differ a little.
PACE_MARGIN = 0.8
# No wait (for a token, after a 429) is slept in place for longer than this; past it the
# caller reports a throttle (with the wait as retry-after) instead of holding a worker.
INLINE_SLEEP_MAX_SECONDS = 5.0
PACE_MAX_WAIT_SECONDS = INLINE_SLEEP_MAX_SECONDS
# The rate an answer names is kept within these multiples of the documented rate.
RATE_FLOOR_RATIO = 0.1
RATE_CEILING_RATIO = 2.0

# Token buckets of this process, used while the shared cache cannot be reached.
_local_lock = threading.Lock()
_local_buckets: dict[str, tuple[float, float]] = {}


@dataclass
class Answer:
    """One SP-API answer: the response, its JSON object (None: not an object), the time it
    took, the rate it named, and how it is classified (None: a success)."""

    response: Any
    body: dict | None
    latency_ms: int
    rate: float | None
    outcome: Outcome | None
    token_expired: bool = False

    @property
    def status(self) -> int:
        return self.response.status_code


class Throttled(Exception):
    """The operation's bucket has no token for longer than a call may wait (`wait` s)."""

    def __init__(self, operation: str, wait: float) -> None:
        super().__init__(f"{operation}: rate limit, next call in {wait:.1f} s")
        self.operation = operation
        self.wait = wait


def amz_date(moment: datetime | None = None) -> str:
    """The `x-amz-date` value: UTC in ISO 8601 basic format (`20240101T000000Z`)."""
    return (moment or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def iso_z(moment: datetime) -> str:
    """An aware datetime as the ISO 8601 UTC text the Orders API takes (whole seconds)."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_of(response: Any) -> float | None:
    """The `x-amzn-RateLimit-Limit` of an answer as calls per second (None: absent or odd)."""
    raw = response.headers.get(RATE_HEADER)
    try:
        rate = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return None
    return rate


def rate_clamped(operation: str, rate: float) -> float:
    """A rate an answer named, kept within [documented / 10, documented * 2]."""
    documented, _burst = OPERATION_LIMITS[operation]
    return min(max(rate, documented * RATE_FLOOR_RATIO), documented * RATE_CEILING_RATIO)


def local_take(key: str, *, rate: float, burst: int) -> float:
    """Take a token of this process's bucket; 0 when taken, else the seconds to wait."""
    now = time.monotonic()
    with _local_lock:
        tokens, at = _local_buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - at) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        _local_buckets[key] = (tokens, now)
    return wait


def error_codes(body: dict | None) -> list[str]:
    """The `errors[].code` of an SP-API error answer."""
    errors = (body or {}).get("errors")
    if not isinstance(errors, list):
        return []
    return [answer_text(e.get("code")) for e in errors if isinstance(e, dict)]


def error_text(body: dict | None) -> str:
    """`errors[].message` and `details`, joined (what tells an expired token apart)."""
    errors = (body or {}).get("errors")
    if not isinstance(errors, list):
        return ""
    parts = []
    for error in errors:
        if isinstance(error, dict):
            parts.extend(str(error.get(name) or "") for name in ("message", "details"))
    return " ".join(part for part in parts if part)


def classify(status: int, body: dict | None) -> tuple[Outcome | None, bool]:
    """(outcome, token expired) of an SP-API answer; outcome None for a 2xx.

    429 or `QuotaExceeded`: throttled. 5xx: retryable. 401/403: auth (the credentials, the
    seller id or the application's roles are refused), `token_expired` when the message
    says the access token expired. Any other 4xx: permanent (the request itself is wrong;
    a 404 is left to the caller: per SKU it is "no such listing").
    """
    if 200 <= status < 300:
        return None, False
    if status == 429 or "QuotaExceeded" in error_codes(body):
        return Outcome.THROTTLED, False
    if status >= 500:
        return Outcome.RETRYABLE, False
    if status in (401, 403):
        return Outcome.AUTH, "expired" in error_text(body).lower()
    return Outcome.PERMANENT, False


class SpApiClient:
    """The calls of one Amazon channel: token refresh, paced and classified SP-API calls.

    `adapter` is the `AmazonAdapter` (its base URL, credentials, session and timeout).
    Rates named by answers replace the documented ones for the adapter's life.
    """

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.rates: dict[str, float] = {}

    # --- rates ------------------------------------------------------------------------------

    def limits(self, operation: str) -> tuple[float, int]:
        """(rate per second, burst) in force for an operation."""
        rate, burst = OPERATION_LIMITS[operation]
        if operation == "patchListingsItem":
            burst = max(1, int(settings.AMAZON_PATCH_BURST))
        return self.rates.get(operation, rate), burst

    def throttle_wait(self, operation: str) -> float:
        """Seconds to wait after a 429 (none documented): one token at the rate in force."""
        rate, _burst = self.limits(operation)
        return max(0.05, 1.0 / (rate * PACE_MARGIN))

    def throttle_pause(self, operation: str) -> float | None:
        """Sleep one token's time after a 429 and return it, when that is short; None (no
        sleep) when it is longer than `INLINE_SLEEP_MAX_SECONDS`: the caller gives the
        throttle back (with `throttle_wait` as retry-after)."""
        wait = self.throttle_wait(operation)
        if wait > INLINE_SLEEP_MAX_SECONDS:
            return None
        time.sleep(wait)
        return wait

    def pace(self, operation: str, *, max_wait: float = PACE_MAX_WAIT_SECONDS) -> float:
        """Take a token of the operation's shared bucket, sleeping for it when the wait is
        short; return the seconds slept. Raises `Throttled` when the wait exceeds `max_wait`
        (at most `INLINE_SLEEP_MAX_SECONDS`). A cache that cannot be reached makes the bucket
        this process's own (logged as `cache.degraded`), never an error.
        """
        rate, burst = self.limits(operation)
        max_wait = min(max_wait, INLINE_SLEEP_MAX_SECONDS)
        credentials = self.adapter.credentials
        key = (
            f"amazon:{credentials.get('lwa_client_id', '')}:"
            f"{credentials.get('seller_id', '')}:{operation}"
        )
        slept = 0.0
        while True:
            try:
                wait = rate_limit_take(key, rate=rate * PACE_MARGIN, burst=burst)
            except CACHE_ERRORS as exc:
                cache_degraded("amazon_rate_limit", exc)
                wait = local_take(key, rate=rate * PACE_MARGIN, burst=burst)
            if wait <= 0:
                return slept
            if slept + wait > max_wait:
                raise Throttled(operation, wait)
            time.sleep(wait)
            slept += wait

    # --- calls ------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        max_wait: float = PACE_MAX_WAIT_SECONDS,
    ) -> Answer:
        """Send one paced SP-API call; return its classified answer.

        Raises `Throttled` (no call made) and `OutboundError` (transport failure).
        """
        self.pace(operation, max_wait=max_wait)
        headers = {
            "x-amz-access-token": str(self.adapter.credentials.get("access_token", "")),
            "x-amz-date": amz_date(),
            "user-agent": USER_AGENT,
            "accept": "application/json",
        }
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            headers["content-type"] = "application/json"
            kwargs["json"] = json_body
        response, latency_ms = self.adapter._request(
            method, f"{self.adapter.base_url}{path}", **kwargs
        )
        rate = rate_of(response)
        if rate is not None:
            rate = rate_clamped(operation, rate)
            self.rates[operation] = rate
        body = answer_json(response)
        outcome, expired = classify(response.status_code, body)
        return Answer(response, body, latency_ms, rate, outcome, expired)

    def call_or_raise(
        self, method: str, path: str, *, operation: str, what: str, **kwargs
    ) -> Answer:
        """`call`, raising a classified `AdapterError` for throttles, transport failures and
        failed answers (404 included: callers that take it as "unknown" catch it first)."""
        try:
            answer = self.call(method, path, operation=operation, **kwargs)
        except Throttled as exc:
            raise AdapterError(
                f"{what}: {exc}", outcome=Outcome.THROTTLED, retry_after=exc.wait
            ) from None
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
        if answer.outcome is not None:
            raise self.answer_error(answer, what=what, operation=operation)
        if answer.body is None:
            raise AdapterError(
                f"{what}: HTTP {answer.status} answer is not a JSON object",
                outcome=Outcome.RETRYABLE,
            )
        return answer

    def answer_error(self, answer: Answer, *, what: str, operation: str) -> AdapterError:
        """The `AdapterError` of a failed answer (throttles wait one token's time)."""
        outcome = answer.outcome or Outcome.PERMANENT
        return AdapterError(
            f"{what}: HTTP {answer.status} {self.adapter.excerpt(answer.response.content)}",
            outcome=outcome,
            token_expired=answer.token_expired,
            retry_after=self.throttle_wait(operation) if outcome == Outcome.THROTTLED else None,
        )

    # --- tokens -----------------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Exchange the refresh token for an access token (LWA); return the credentials.

        Raises `AdapterError`: `auth` for an OAuth refusal (`invalid_grant` and the like: the
        seller must authorise again), `retryable` for transport failures, 429, 5xx and an
        answer that cannot be read.
        """
        adapter = self.adapter
        credentials = adapter.credentials
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            raise AdapterError("no refresh token: authorise the seller again", outcome=Outcome.AUTH)
        form = {
            "grant_type": "refresh_token",
            "refresh_token": str(refresh_token),
            "client_id": str(credentials.get("lwa_client_id", "")),
            "client_secret": str(credentials.get("lwa_client_secret", "")),
        }
        try:
            response, _ = adapter._request(
                "POST",
                f"{adapter.auth_base_url}{TOKEN_PATH}",
                data=form,
                headers={"accept": "application/json", "user-agent": USER_AGENT},
            )
        except OutboundError as exc:
            raise AdapterError(f"token refresh: {exc}", outcome=Outcome.RETRYABLE) from None
        status = response.status_code
        body = answer_json(response)
        detail = f"HTTP {status} {adapter.excerpt(response.content)}"
        if status == 429 or status >= 500:
            raise AdapterError(f"token refresh: {detail}", outcome=Outcome.RETRYABLE)
        if status >= 400:
            # `invalid_grant` (a revoked or unknown refresh token), `invalid_client` and the
            # other OAuth refusals (RFC 6749 section 5.2) need a new authorisation; so does
            # any other 4xx (a bad request, an unsupported grant: a broken configuration).
            error = answer_text((body or {}).get("error"))
            kind = error or "refused"
            raise AdapterError(f"token refresh {kind}: {detail}", outcome=Outcome.AUTH)
        token = (body or {}).get("access_token")
        if not isinstance(token, str) or not token:
            raise AdapterError(f"token refresh: {detail}", outcome=Outcome.RETRYABLE)
        credentials["access_token"] = token
        if isinstance(body.get("refresh_token"), str) and body["refresh_token"]:
            credentials["refresh_token"] = body["refresh_token"]
        lifetime = body.get("expires_in")
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
            credentials["access_token_expires_at"] = adapter.expires_iso(float(lifetime))
        return dict(credentials)
