"""A fake merchant's own shop with a JSON API, for the custom REST shop channel type.

It checks every call with its own code: the auth mode it is configured for (`auth`:
`bearer`, `basic`, `api_key` with `api_key_header`, or `hmac`: `X-Signature:
t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>` within 5 minutes), and
`Idempotency-Key` on writes the way Stripe does (the same key with the same body answers the
saved answer, with another body 422 `idempotency_key_reused`). Routes:

- `PUT /api/v1/inventory/<sku>` `{"quantity": n}`: one listing; 200 `{"ok": true, ...}`,
  200 `{"ok": false, "error": "sku_locked"}` for a rejected SKU, 404 for an unknown SKU,
  422 for a bad body.
- `POST /api/v1/inventory/batch` `{"request_id": "...", "items": [{"sku", "qty"}]}` (at most
  `BATCH_MAX` items): 200 `{"results": [{"sku", "ok", "error"}]}`, one row per item.
- `GET /api/v1/inventory/<sku>` -> `{"sku", "available"}` (404 unknown);
  `GET /api/v1/inventory?skus=a,b` -> `{"items": [{"sku", "available"}]}`.
- `GET /api/v1/orders?updated_since=<iso>&updated_until=<iso>&page=<n>` -> `{"orders":
  [{"id", "status", "updated_at"}], "page": n}` (`order_page_size` a page);
  `GET /api/v1/orders/<id>` -> the order with `lines[]` (404 unknown).

Faults answer 429 with `Retry-After` (throttle) or 503 (error). Webhooks go to the
`webhook_url` option signed `X-SyncStore-Signature: t=<unix>,v1=<hex>` with the webhook
secret; every delivery is signed afresh (a copy of the same body gets an earlier `t`), as the
channel type asks of a shop. `redeliver_last()` sends the last delivery's exact bytes again
(a replay).
"""

import base64
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from channels_sync.sandbox.base import Delivery, MarketplaceSandbox, SandboxOrder
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

ITEM_PATH = re.compile(r"^/api/v1/inventory/(?P<sku>[^/]+)$")
ORDER_PATH = re.compile(r"^/api/v1/orders/(?P<order_id>[^/]+)$")
BATCH_MAX = 100
SIGNATURE_WINDOW = 300
AUTH_MODES = ("bearer", "basic", "api_key", "hmac")
STATUSES = ("pending", "paid", "packed", "shipped", "delivered", "completed", "cancelled")


def _sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return mac.hexdigest()


class RestShopSandbox(MarketplaceSandbox):
    """A configurable shop: auth mode, per-item and batch stock calls, read-back, orders."""

    name = "rest"
    key_names = ("sku",)
    unpaid_statuses = ("pending",)
    token = "sandbox-rest-token"  # noqa: S105 - a fake's made-up secrets
    username = "sandbox-rest-user"
    password = "sandbox-rest-password"  # noqa: S105
    api_key = "sandbox-rest-api-key"
    hmac_secret = "sandbox-rest-hmac-secret"  # noqa: S105
    webhook_secret = "whsec_sandbox_rest"  # noqa: S105

    def __init__(self) -> None:
        super().__init__()
        self.shop = {"auth": "bearer", "api_key_header": "X-Api-Key", "order_page_size": 50}
        self.idempotent: dict[str, tuple[bytes, SandboxResponse]] = {}
        self.updates: list[tuple[str, int]] = []
        self.sent: list[tuple[bytes, dict[str, str]]] = []
        self._signed_at: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.shop = {"auth": "bearer", "api_key_header": "X-Api-Key", "order_page_size": 50}
            self.idempotent.clear()
            self.updates.clear()
            self.sent.clear()
            self._signed_at.clear()

    def configure(self, **options: Any) -> dict:
        """The shared options, and the shop's `auth`, `api_key_header`, `order_page_size`."""
        shop = {name: options.pop(name) for name in list(options) if name in self.shop}
        if "auth" in shop and shop["auth"] not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}")
        configured = super().configure(**options)
        with self._lock:
            self.shop.update(shop)
        return {**configured, **self.shop}

    def credentials(self) -> dict[str, str]:
        """Every credential this shop accepts (a channel keeps the ones its mode uses)."""
        return {
            "token": self.token,
            "username": self.username,
            "password": self.password,
            "api_key": self.api_key,
            "hmac_secret": self.hmac_secret,
            "webhook_secret": self.webhook_secret,
        }

    # --- requests -------------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if not request.path.startswith("/api/v1/"):
            return SandboxResponse.json(404, {"error": "not_found"})
        refused = self._auth_refused(request)
        if refused:
            self.count("auth_refused")
            return SandboxResponse.json(401, {"error": "unauthorized", "message": refused})
        path, method = request.path, request.method
        if path == "/api/v1/inventory/batch" and method == "POST":
            return self._idempotent(request, self._batch)
        item = ITEM_PATH.match(path)
        if item and method == "PUT":
            return self._idempotent(request, lambda r: self._one(r, unquote(item["sku"])))
        if item and method == "GET":
            return self._read([unquote(item["sku"])], one=True)
        if path == "/api/v1/inventory" and method == "GET":
            skus = [s for v in request.query.get("skus", []) for s in v.split(",") if s]
            return self._read(skus, one=False)
        if path == "/api/v1/orders" and method == "GET":
            return self._order_list(request)
        order = ORDER_PATH.match(path)
        if order and method == "GET":
            return self._order_detail(unquote(order["order_id"]))
        return SandboxResponse.json(405 if item else 404, {"error": "no_such_route"})

    def _auth_refused(self, request: SandboxRequest) -> str:
        """Why the call's credentials are refused ('' when they are good)."""
        mode = self.shop["auth"]
        given = _header(request, "Authorization")
        if mode == "bearer":
            ok = hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())
            return "" if ok else "bad bearer token"
        if mode == "basic":
            wanted = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            ok = hmac.compare_digest(given.encode(), f"Basic {wanted}".encode())
            return "" if ok else "bad basic credentials"
        if mode == "api_key":
            key = _header(request, self.shop["api_key_header"])
            return "" if hmac.compare_digest(key.encode(), self.api_key.encode()) else "bad key"
        fields = dict(
            part.strip().split("=", 1)
            for part in _header(request, "X-Signature").split(",")
            if "=" in part
        )
        stamp = fields.get("t", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > SIGNATURE_WINDOW:
            return "signature timestamp missing or outside 5 minutes"
        wanted = _sign(self.hmac_secret, int(stamp), request.body)
        if not hmac.compare_digest(fields.get("v1", "").encode(), wanted.encode()):
            self.count("bad_signature")
            return "bad signature"
        return ""

    def _idempotent(self, request: SandboxRequest, apply: Any) -> SandboxResponse:
        """Run a write once per `Idempotency-Key` (Stripe's rules, see the module)."""
        key = _header(request, "Idempotency-Key")
        if key:
            with self._lock:
                saved = self.idempotent.get(key)
            if saved is not None:
                if saved[0] != request.body:
                    return SandboxResponse.json(422, {"error": "idempotency_key_reused"})
                self.count("idempotent_replays")
                return saved[1]
        fate = self.gate()
        if fate == "throttle":
            return SandboxResponse.json(
                429, {"error": "rate_limited"}, headers={"Retry-After": "1"}
            )
        if fate == "error":
            return SandboxResponse.json(503, {"error": "unavailable"})
        response = apply(request)
        if key and response.status < 500:
            with self._lock:
                self.idempotent[key] = (request.body, response)
        return response

    def _set(self, sku: str, quantity: Any) -> str:
        """Apply one quantity; the error code ('' when applied)."""
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            return "invalid_quantity"
        if self.quantity({"sku": sku}) is None:
            return "unknown_sku"
        if self.is_rejected({"sku": sku}):
            self.count("items_rejected")
            return "sku_locked"
        with self._lock:
            self.stock[self.key_of({"sku": sku})] = quantity
            self.updates.append((sku, quantity))
        return ""

    def _one(self, request: SandboxRequest, sku: str) -> SandboxResponse:
        body = _json(request)
        if not isinstance(body, dict) or "quantity" not in body:
            return SandboxResponse.json(422, {"error": "invalid_body"})
        error = self._set(sku, body["quantity"])
        if error == "unknown_sku":
            return SandboxResponse.json(404, {"error": error})
        if error == "invalid_quantity":
            return SandboxResponse.json(422, {"error": error})
        if error:
            return SandboxResponse.json(200, {"ok": False, "sku": sku, "error": error})
        return SandboxResponse.json(200, {"ok": True, "sku": sku, "quantity": body["quantity"]})

    def _batch(self, request: SandboxRequest) -> SandboxResponse:
        body = _json(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or len(items) > BATCH_MAX:
            return SandboxResponse.json(
                422, {"error": f"items must be a list of 1 to {BATCH_MAX} objects"}
            )
        if not all(isinstance(i, dict) and isinstance(i.get("sku"), str) for i in items):
            return SandboxResponse.json(422, {"error": "each item needs a sku"})
        results = []
        for item in items:
            error = self._set(item["sku"], item.get("qty"))
            results.append({"sku": item["sku"], "ok": not error, "error": error or None})
        return SandboxResponse.json(200, {"request_id": body.get("request_id"), "results": results})

    def _read(self, skus: list[str], *, one: bool) -> SandboxResponse:
        fate = self.gate(read=True)
        if fate == "throttle":
            return SandboxResponse.json(429, {"error": "rate_limited"}, {"Retry-After": "1"})
        if fate == "error":
            return SandboxResponse.json(503, {"error": "unavailable"})
        rows = [
            {"sku": sku, "available": self.quantity({"sku": sku})}
            for sku in skus
            if self.quantity({"sku": sku}) is not None
        ]
        if one:
            return (
                SandboxResponse.json(200, rows[0])
                if rows
                else SandboxResponse.json(404, {"error": "unknown_sku"})
            )
        return SandboxResponse.json(200, {"items": rows})

    # --- orders -------------------------------------------------------------------------------

    def _order_list(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        try:
            since = _parse_iso(query["updated_since"])
            until = _parse_iso(query["updated_until"])
            page = int(query.get("page", "1"))
        except (KeyError, ValueError):
            return SandboxResponse.json(
                400, {"error": "updated_since and updated_until (ISO-8601) are required"}
            )
        if page < 1:
            return SandboxResponse.json(400, {"error": "page starts at 1"})
        with self._lock:
            found = sorted(
                (o for o in self.orders.values() if since <= o.updated < until),
                key=lambda o: (o.updated, o.order_id),
            )
        size = int(self.shop["order_page_size"])
        rows = found[(page - 1) * size : page * size]
        return SandboxResponse.json(
            200,
            {
                "orders": [
                    {"id": o.order_id, "status": o.status, "updated_at": _iso(o.updated)}
                    for o in rows
                ],
                "page": page,
            },
        )

    def _order_detail(self, order_id: str) -> SandboxResponse:
        with self._lock:
            order = self.orders.get(order_id)
        if order is None:
            return SandboxResponse.json(404, {"error": "unknown_order"})
        return SandboxResponse.json(200, self.order_json(order))

    @staticmethod
    def order_json(order: SandboxOrder) -> dict[str, Any]:
        return {
            "id": order.order_id,
            "number": f"#{order.order_id}",
            "status": order.status,
            "created_at": _iso(order.created),
            "paid_at": _iso(order.paid) if order.paid else None,
            "updated_at": _iso(order.updated),
            "currency": "USD",
            "lines": [
                {
                    "id": line.line_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "price": line.price,
                    "title": f"Item {line.sku}",
                }
                for line in order.lines
            ],
        }

    # --- webhooks -------------------------------------------------------------------------------

    def signed(self, body: bytes, *, bad: bool = False) -> dict[str, str]:
        """Headers signing a body now; a body signed before gets an earlier `t`, so every
        delivery's signature differs (what the channel type asks of a shop)."""
        digest = hashlib.sha256(body).hexdigest()
        now = int(time.time())
        with self._lock:
            last = self._signed_at.get(digest)
            stamp = now if last is None else min(now, last - 1)
            self._signed_at[digest] = stamp
        secret = "not-the-webhook-secret" if bad else self.webhook_secret
        return {
            "Content-Type": "application/json",
            "X-SyncStore-Signature": f"t={stamp},v1={_sign(secret, stamp, body)}",
        }

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        event = f"evt_{order.order_id}_{order.status}_{int(order.updated)}"
        body = json.dumps(
            {
                "id": event,
                "type": "order.updated",
                "created": int(order.updated),
                "data": {
                    "order_id": order.order_id,
                    "status": order.status,
                    "updated_at": _iso(order.updated),
                },
            }
        ).encode()
        return body, self.signed(body, bad=bad_signature)

    def stock_notification(self, keys: dict[str, str], quantity: int) -> tuple[bytes, dict]:
        now = time.time()
        body = json.dumps(
            {
                "id": f"evt_stock_{keys['sku']}_{int(now * 1000)}",
                "type": "stock.updated",
                "created": int(now),
                "data": {"items": [{"sku": keys["sku"], "quantity": quantity}]},
            }
        ).encode()
        return body, self.signed(body)

    def _deliver(
        self, order_id: str, status: str, body: bytes, headers: dict, *, bad: bool = False
    ) -> Delivery:
        if self.sent and self.sent[-1][0] == body and not bad:
            headers = self.signed(body)  # a copy: signed afresh
        with self._lock:
            self.sent.append((body, dict(headers)))
        return super()._deliver(order_id, status, body, headers, bad=bad)

    def redeliver_last(self) -> Delivery:
        """Send the last delivery's exact bytes and headers again (a replay)."""
        body, headers = self.sent[-1]
        return super()._deliver("", "replay", body, headers)


def _header(request: SandboxRequest, name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in request.headers.items() if k.lower() == lowered), "")


def _json(request: SandboxRequest) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


register_sandbox("rest", RestShopSandbox)
