"""A fake Square (Inventory, Orders and OAuth APIs) for one seller.

Routes:

- `POST /v2/inventory/changes/batch-create`: PHYSICAL_COUNT changes (IN_STOCK) only, 1 to
  100 per call, all or nothing. Checked with this module's own parsing: `idempotency_key`
  (1 to 128 characters; the same key with the same body answers the first answer again and
  applies nothing twice; with another body, 400 IDEMPOTENCY_KEY_REUSED), each change's
  `catalog_object_id` and `location_id` (known listing, else 404-style NOT_FOUND naming
  `changes[i]...`), `state`, `quantity` (a decimal STRING of at most 5 places, not below 0:
  a number is EXPECTED_STRING), `occurred_at` (RFC 3339, not older than 24 hours nor in the
  future by the sandbox's clock: INVALID_VALUE). Every refusal is 400 with `errors[]` of
  `{category, code, detail, field}` and nothing applied. A count stamped before the
  listing's last change is kept in the history but does not change the current quantity
  (Square orders changes by `occurred_at`).
- `POST /v2/inventory/counts/batch-retrieve`: `{catalog_object_ids, location_ids, states,
  cursor}`; IN_STOCK counts with decimal-string quantities, `count_page_size` a page.
- `POST /oauth2/token`: `grant_type=refresh_token` (or `authorization_code` with a code
  from `issue_auth_code`); the refresh token is kept (the code flow does not rotate it).
- Orders (`orders.py`): `POST /v2/orders/search`, `POST /v2/orders/batch-retrieve`, and
  `order.created` / `order.updated` notifications.

Every API call needs `Authorization: Bearer <token>` (401 UNAUTHORIZED, or
ACCESS_TOKEN_EXPIRED) and a well-formed `Square-Version` when sent (400
INVALID_SQUARE_VERSION_FORMAT; each one seen is kept in `versions`). Faults: throttled
calls answer 429 RATE_LIMITED (category RATE_LIMIT_ERROR), errors 500 INTERNAL_SERVER_ERROR;
`reject` keys are refused per change (400 INVALID_VALUE naming the change; with
`reject_unattributed`, an error without a `field`, as Square answers some refusals, so the
caller cannot tell which change was at fault). `clock_offset`
(seconds) moves the sandbox's clock, so a test can be "25 hours later" on both sides.
Notifications are signed as Square signs them: `x-square-hmacsha256-signature` = base64
HMAC-SHA256 of the `webhook_url` option + raw body, keyed with the signature key.
"""

import base64
import hashlib
import hmac
import json
import re
import time
from decimal import Decimal
from typing import Any

from channels_sync.sandbox.base import MarketplaceSandbox
from channels_sync.sandbox.square.orders import SquareOrders
from channels_sync.sandbox.square.tokens import TOKEN_PATH, SquareTokens
from channels_sync.sandbox.square.wire import (
    cursor_make,
    cursor_offset,
    epoch,
    error_answer,
    field_error,
    header,
    iso,
)
from core.sandbox import SandboxRequest, SandboxResponse

CHANGES_PATH = "/v2/inventory/changes/batch-create"
COUNTS_PATH = "/v2/inventory/counts/batch-retrieve"
MAX_CHANGES = 100
MAX_COUNT_IDS = 1000
COUNT_AGE_LIMIT = 24 * 3600
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_QUANTITY = re.compile(r"^-?\d{1,20}(\.\d{1,5})?$")


class SquareSandbox(SquareTokens, SquareOrders, MarketplaceSandbox):
    """Square: item variation counts per location, bearer tokens, idempotent batches."""

    name = "square"
    key_names = ("catalog_object_id", "location_id")
    merchant_id = "MLSANDBOX0SQ1"

    def __init__(
        self,
        *,
        location_id: str = "LSANDBOXMAIN01",
        signature_key: str = "sandbox-square-signature-key",
        client_id: str = "sandbox-sq0idp-app",
        client_secret: str = "sandbox-sq0csp-secret",  # noqa: S107 - a fake's made-up secret
    ) -> None:
        super().__init__()
        self.location_id = location_id
        self.signature_key = signature_key
        self.client_id = client_id
        self.client_secret = client_secret
        self.counts |= {"replays": 0, "bad_timestamp": 0}
        self._reset_square()

    def _reset_square(self) -> None:
        self.clock_offset = 0.0
        self.reject_unattributed = False
        self.count_page_size = 100
        self.order_page_size: int | None = None
        self.idempotency: dict[str, tuple[str, SandboxResponse]] = {}
        self.count_times: dict[tuple[str, ...], float] = {}
        self.updates: list[dict[str, Any]] = []  # every change applied (or kept as history)
        self.versions: list[str] = []
        self.auth_codes: set[str] = set()

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._reset_square()

    def configure(self, **options: Any) -> dict:
        """The shared options, and `clock_offset` (seconds added to the sandbox's clock),
        `reject_unattributed` (refusals of `reject` keys name no change),
        `count_page_size` (counts per read page) and `order_page_size` (orders per search
        page below the asked limit; None: as asked)."""
        offset = options.pop("clock_offset", self.clock_offset)
        unattributed = options.pop("reject_unattributed", self.reject_unattributed)
        if not isinstance(unattributed, bool):
            raise ValueError("reject_unattributed must be true or false")
        count_page = options.pop("count_page_size", self.count_page_size)
        order_page = options.pop("order_page_size", self.order_page_size)
        if isinstance(offset, bool) or not isinstance(offset, int | float):
            raise ValueError("clock_offset must be a number of seconds")
        for name, value in (("count_page_size", count_page), ("order_page_size", order_page)):
            if value is None and name == "order_page_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        configured = super().configure(**options)
        with self._lock:
            self.clock_offset = float(offset)
            self.reject_unattributed = unattributed
            self.count_page_size = count_page
            self.order_page_size = order_page
        return {
            **configured,
            "clock_offset": offset,
            "reject_unattributed": unattributed,
            "count_page_size": count_page,
            "order_page_size": order_page,
        }

    def now(self) -> float:
        """The sandbox's clock (epoch seconds), `clock_offset` included."""
        return time.time() + self.clock_offset

    def seed_listings(self, listings: Any, quantity: int = 0) -> None:
        """Make listings known; one without `location_id` is at the main location."""
        listings = [
            {**listing, "location_id": listing.get("location_id") or self.location_id}
            for listing in listings
        ]
        super().seed_listings(listings, quantity)

    def stock_set_external(self, keys: dict[str, Any], quantity: int, *, notify: bool = True):
        """A count made in Square's own dashboard: it is the listing's latest change."""
        delivery = super().stock_set_external(keys, quantity, notify=notify)
        with self._lock:
            self.count_times[self.key_of(keys)] = self.now()
        return delivery

    def describe(self) -> str:
        return (
            f"{self.name}: POST {CHANGES_PATH}, POST {COUNTS_PATH}, POST /v2/orders/search, "
            f"POST /v2/orders/batch-retrieve, POST {TOKEN_PATH} (location {self.location_id})"
        )

    def sign(self, body: bytes, *, key: str | None = None, url: str | None = None) -> str:
        """The signature header value of a notification body for the `webhook_url` option."""
        message = (self.options["webhook_url"] if url is None else url).encode() + body
        digest = hmac.new((key or self.signature_key).encode(), message, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    # --- routes -----------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.method == "POST" and request.path == TOKEN_PATH:
            return self._token(request)
        routes = {
            CHANGES_PATH: self._changes,
            COUNTS_PATH: self._counts,
            **self.order_routes(),
        }
        route = routes.get(request.path)
        if request.method != "POST" or route is None:
            return error_answer(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", "Unknown endpoint.")
        refused = self._checked(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return error_answer(
                400, "INVALID_REQUEST_ERROR", "EXPECTED_JSON_BODY", "The body is not a JSON object."
            )
        return route(request, body)

    def _checked(self, request: SandboxRequest) -> SandboxResponse | None:
        """The refusal of a call's version or bearer token, if any."""
        version = header(request, "Square-Version")
        if version:
            with self._lock:
                self.versions.append(version)
            if not _VERSION.match(version):
                return error_answer(
                    400,
                    "INVALID_REQUEST_ERROR",
                    "INVALID_SQUARE_VERSION_FORMAT",
                    "The Square-Version header must be YYYY-MM-DD.",
                )
        scheme, _, token = header(request, "Authorization").partition(" ")
        state = self.token_state(token.strip()) if scheme == "Bearer" else "invalid"
        if state == "ok":
            return None
        self.count("auth_refused")
        if state == "expired":
            return error_answer(
                401, "AUTHENTICATION_ERROR", "ACCESS_TOKEN_EXPIRED", "The access token expired."
            )
        return error_answer(
            401,
            "AUTHENTICATION_ERROR",
            "UNAUTHORIZED",
            "This request could not be authorized.",
        )

    def _fault_answer(self, fate: str | None) -> SandboxResponse | None:
        if fate == "throttle":
            return error_answer(429, "RATE_LIMIT_ERROR", "RATE_LIMITED", "Rate limit exceeded.")
        if fate == "error":
            return error_answer(500, "API_ERROR", "INTERNAL_SERVER_ERROR", "An internal error.")
        return None

    # --- inventory changes ------------------------------------------------------------------

    def _changes(self, request: SandboxRequest, body: dict[str, Any]) -> SandboxResponse:
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                "idempotency_key must be a string of 1 to 128 characters.",
                field="idempotency_key",
            )
        fault = self._fault_answer(self.gate())
        if fault is not None:
            return fault
        fingerprint = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        with self._lock:
            seen = self.idempotency.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                return error_answer(
                    400,
                    "INVALID_REQUEST_ERROR",
                    "IDEMPOTENCY_KEY_REUSED",
                    "The idempotency key was used with another request.",
                    field="idempotency_key",
                )
            self.count("replays")
            return seen[1]
        changes = body.get("changes")
        if not isinstance(changes, list) or not 1 <= len(changes) <= MAX_CHANGES:
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "ARRAY_LENGTH_TOO_LONG" if isinstance(changes, list) and changes else "ARRAY_EMPTY",
                f"changes must hold 1 to {MAX_CHANGES} changes.",
                field="changes",
            )
        parsed, errors = [], []
        for index, change in enumerate(changes):
            count, error = self._change_parse(index, change)
            if error is not None:
                errors.append(error)
            else:
                parsed.append(count)
        if errors:
            self.count("items_rejected")
            if any(error.get("field", "").endswith("occurred_at") for error in errors):
                self.count("bad_timestamp")
            return SandboxResponse.json(400, {"errors": errors})
        answer = SandboxResponse.json(
            200, {"counts": self._apply(parsed, key, body.get("ignore_unchanged_counts") is True)}
        )
        with self._lock:
            self.idempotency[key] = (fingerprint, answer)
        return answer

    def _change_parse(self, index: int, change: Any) -> tuple[dict, dict | None]:
        """One change's physical count, or the error naming it (`changes[i]...`)."""
        where = f"changes[{index}]"
        if not isinstance(change, dict) or change.get("type") != "PHYSICAL_COUNT":
            return {}, field_error("INVALID_ENUM_VALUE", "Only PHYSICAL_COUNT.", f"{where}.type")
        count = change.get("physical_count")
        where += ".physical_count"
        if not isinstance(count, dict):
            return {}, field_error("EXPECTED_OBJECT", "A physical count is required.", where)
        keys = {name: count.get(name) for name in self.key_names}
        for name, value in keys.items():
            if not isinstance(value, str) or not value:
                return {}, field_error("EXPECTED_STRING", f"{name} is required.", f"{where}.{name}")
        key = self.key_of(keys)
        if key not in self.stock:
            return {}, field_error(
                "NOT_FOUND",
                "The item variation is not tracked at this location.",
                f"{where}.catalog_object_id",
            )
        if self.is_rejected(keys):
            error = field_error(
                "INVALID_VALUE",
                "Inventory tracking is off for this item variation.",
                f"{where}.catalog_object_id",
            )
            if self.reject_unattributed:
                error.pop("field", None)
            return {}, error
        if count.get("state") != "IN_STOCK":
            return {}, field_error("INVALID_ENUM_VALUE", "Only IN_STOCK.", f"{where}.state")
        quantity = count.get("quantity")
        if not isinstance(quantity, str):
            return {}, field_error(
                "EXPECTED_STRING", "quantity must be a decimal string.", f"{where}.quantity"
            )
        if not _QUANTITY.match(quantity) or Decimal(quantity) < 0:
            return {}, field_error(
                "INVALID_VALUE", "quantity must be a decimal of at least 0.", f"{where}.quantity"
            )
        moment = epoch(count.get("occurred_at"))
        if moment is None:
            return {}, field_error(
                "INVALID_TIME", "occurred_at must be RFC 3339.", f"{where}.occurred_at"
            )
        now = self.now()
        if moment < now - COUNT_AGE_LIMIT or moment > now:
            return {}, field_error(
                "INVALID_VALUE",
                "occurred_at cannot be older than 24 hours or in the future.",
                f"{where}.occurred_at",
            )
        return {
            "keys": keys,
            "quantity": Decimal(quantity),
            "occurred_at": moment,
            "reference_id": count.get("reference_id"),
        }, None

    def _apply(self, counts: list[dict], key: str, ignore_unchanged: bool) -> list[dict]:
        """Apply accepted counts (whole units: the sandbox keeps integers); the answer's
        `counts[]`."""
        answered = []
        with self._lock:
            for count in counts:
                entry = self.key_of(count["keys"])
                quantity = int(count["quantity"])
                latest = self.count_times.get(entry, float("-inf"))
                newest = count["occurred_at"] >= latest
                unchanged = self.stock[entry] == quantity
                if newest and not (ignore_unchanged and unchanged):
                    self.stock[entry] = quantity
                    self.count_times[entry] = count["occurred_at"]
                self.updates.append(
                    {**count["keys"], "quantity": quantity, "applied": newest, "key": key}
                )
                answered.append(self._count_json(entry))
        return answered

    def _count_json(self, entry: tuple[str, ...]) -> dict[str, Any]:
        return {
            "catalog_object_id": entry[0],
            "catalog_object_type": "ITEM_VARIATION",
            "state": "IN_STOCK",
            "location_id": entry[1],
            "quantity": str(self.stock[entry]),
            "calculated_at": iso(self.count_times.get(entry, self.now())),
        }

    # --- reading counts ---------------------------------------------------------------------

    def _counts(self, request: SandboxRequest, body: dict[str, Any]) -> SandboxResponse:
        fault = self._fault_answer(self.gate(read=True))
        if fault is not None:
            return fault
        ids = body.get("catalog_object_ids")
        locations = body.get("location_ids")
        if ids is not None and (not isinstance(ids, list) or len(ids) > MAX_COUNT_IDS):
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "ARRAY_LENGTH_TOO_LONG",
                f"catalog_object_ids holds at most {MAX_COUNT_IDS} ids.",
                field="catalog_object_ids",
            )
        offset = cursor_offset(body.get("cursor"))
        if offset is None:
            return error_answer(
                400, "INVALID_REQUEST_ERROR", "INVALID_CURSOR", "Unknown cursor.", field="cursor"
            )
        states = body.get("states") or ["IN_STOCK"]
        with self._lock:
            rows = [
                self._count_json(entry)
                for entry in sorted(self.stock)
                if (ids is None or entry[0] in ids)
                and (not locations or entry[1] in locations)
                and "IN_STOCK" in states
            ]
        page = rows[offset : offset + self.count_page_size]
        answer: dict[str, Any] = {"counts": page}
        if offset + self.count_page_size < len(rows):
            answer["cursor"] = cursor_make(offset + self.count_page_size)
        return SandboxResponse.json(200, answer)
