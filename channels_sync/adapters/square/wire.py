"""Square's wire format: the webhook signature, times, quantities and error answers.

Pure functions, shared by the adapter's stock, order and webhook code. Sources:

- Webhook signature: `x-square-hmacsha256-signature` is the base64 HMAC-SHA256, keyed with
  the subscription's signature key, of the notification URL (exactly as registered, query
  included) followed by the raw body (Square SDKs' `WebhooksHelper.is_valid_webhook_event_
  signature`, https://github.com/square/square-python-sdk `src/square/utils/webhooks_helper.py`;
  https://developer.squareup.com/docs/webhooks/step3validate).
- Errors: every answer that fails carries `errors[]` of `{category, code, detail, field}`
  (https://developer.squareup.com/reference/square/objects/Error, `ErrorCode`,
  `ErrorCategory`).
- Quantities are decimal strings with up to 5 places; times are RFC 3339
  (https://developer.squareup.com/reference/square/objects/InventoryPhysicalCount).
"""

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from channels_sync.adapters.base import Outcome, answer_list, answer_text

# Codes by what the caller does about them (ErrorCode; HTTP statuses as Square documents).
THROTTLE_CODES = frozenset({"RATE_LIMITED"})
# TEMPORARY_ERROR: "You can safely retry your call using the same idempotency key".
RETRYABLE_CODES = frozenset(
    {
        "TEMPORARY_ERROR",
        "INTERNAL_SERVER_ERROR",
        "SERVICE_UNAVAILABLE",
        "GATEWAY_TIMEOUT",
        "BAD_GATEWAY",
        "REQUEST_TIMEOUT",
        # The key went with another body: the push's next attempt row brings a new key.
        "IDEMPOTENCY_KEY_REUSED",
    }
)
TOKEN_EXPIRED_CODES = frozenset({"ACCESS_TOKEN_EXPIRED"})
# Refused credentials or scopes: only a new authorisation helps (after a refresh, if any).
AUTH_CODES = frozenset(
    {
        "UNAUTHORIZED",
        "ACCESS_TOKEN_EXPIRED",
        "ACCESS_TOKEN_REVOKED",
        "CLIENT_DISABLED",
        "FORBIDDEN",
        "INSUFFICIENT_SCOPES",
        "APPLICATION_DISABLED",
        "V1_APPLICATION",
        "V1_ACCESS_TOKEN",
    }
)
# `field` of an error about one change of a batch: `changes[3]` or `changes[3].physical_...`.
_CHANGE_FIELD = re.compile(r"^changes\[(\d{1,4})\]")
SIGNATURE_HEADER = "x-square-hmacsha256-signature"


def webhook_sign(*, signature_key: str, url: str, body: bytes) -> str:
    """The `x-square-hmacsha256-signature` of a notification: base64 HMAC-SHA256 of URL +
    raw body, keyed with the subscription's signature key."""
    digest = hmac.new(signature_key.encode(), url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def rfc3339_ms(moment: datetime) -> str:
    """A UTC time as Square's examples write it: milliseconds and `Z`
    (`2016-11-16T22:25:24.878Z`). Milliseconds are cut, never rounded up: a stamp must not
    land after the moment it stands for (Square refuses counts from the future)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def when(value: Any) -> datetime | None:
    """An aware datetime from an RFC 3339 string (Square sends up to nanoseconds), else None."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:  # well formed, but no such date (month 13)
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def count_quantity(value: Any) -> int | None:
    """A count's quantity (a decimal string) as whole units, rounded down; None if unreadable.

    A fraction of a unit (Square counts measured items to 5 places) cannot be sold as a
    unit, so 7.5 shows as 7, and -0.5 as -1 (a shortfall stays a shortfall).
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    if not text or len(text) > 40:
        return None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    # `1e999999` is 40 characters that would take a minute to turn into an int: no count
    # comes near 10^18 units.
    if not number.is_finite() or number.adjusted() > 18:
        return None
    return int(number.to_integral_value(rounding=ROUND_FLOOR))


def body_json(data: Any) -> bytes:
    """A request body, compact."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def errors_of(body: dict | None) -> list[dict[str, str]]:
    """The answer's `errors[]` as `{category, code, detail, field}` texts (odd rows left out)."""
    if not isinstance(body, dict):
        return []
    rows = []
    for error in answer_list(body.get("errors")):
        if isinstance(error, dict):
            rows.append(
                {
                    name: answer_text(error.get(name), limit=500)
                    for name in ("category", "code", "detail", "field")
                }
            )
    return rows


def whole_call_outcome(status: int, body: dict | None) -> tuple[Outcome | None, bool]:
    """(outcome, token_expired) of an answer that failed as a whole, or (None, False) for
    the others: a readable 2xx, or a refusal of the request's content (4xx), whose
    `errors[]` and their `field` the caller reads.
    """
    errors = errors_of(body)
    codes = {error["code"] for error in errors}
    categories = {error["category"] for error in errors}
    if status == 429 or codes & THROTTLE_CODES or "RATE_LIMIT_ERROR" in categories:
        return Outcome.THROTTLED, False
    if codes & AUTH_CODES or status == 401 or "AUTHENTICATION_ERROR" in categories:
        return Outcome.AUTH, bool(codes & TOKEN_EXPIRED_CODES)
    if status >= 500 or codes & RETRYABLE_CODES:
        return Outcome.RETRYABLE, False
    if 200 <= status < 300 and body is None:
        # A 2xx nobody can read: a gateway answered, or the answer was cut. Whether the
        # changes applied is unknown; a new attempt sets the same absolute counts.
        return Outcome.RETRYABLE, False
    if status == 403:
        return Outcome.AUTH, False
    return None, False


def change_index(field: str) -> int | None:
    """The index of the change an error's `field` names (`changes[3].physical_count.x`)."""
    match = _CHANGE_FIELD.match(field or "")
    return int(match.group(1)) if match else None


def error_text(error: dict[str, str]) -> str:
    """`CODE field: detail`, for attempt rows and logs."""
    head = error["code"] or error["category"] or "ERROR"
    if error["field"]:
        head = f"{head} {error['field']}"
    return f"{head}: {error['detail']}" if error["detail"] else head
