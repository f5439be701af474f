"""What every marketplace sandbox shares: the shop's stock, tokens, faults, call timing.

A marketplace sandbox checks signatures and tokens with its own code (never the adapter's),
keeps a quantity per listing, answers in the marketplace's success, per-item failure and
throttle shapes, issues and refreshes tokens, and injects faults when configured:

- `error_ratio`: the share of stock calls answered with a server error (0..1);
- `throttle_per_second`: at most this many stock calls per rolling second are accepted, the
  rest get the marketplace's throttle answer (None: no limit);
- `latency`: seconds to wait before answering a stock call;
- `timeout_ratio` / `timeout_seconds`: the share of stock calls that hang that long;
- `reject`: listing keys (objects, as the adapter names them) whose updates fail per item;
- `token_lifetime`: seconds an issued access token lives.

Faults draw from a seeded random generator (`seed`), so a run can be repeated.

Orders: `order_create()` places an order and `order_update()` moves it to a new status; each
then sends the marketplace's signed notification to the `webhook_url` option (the channel's
webhook URL, exactly as registered) with faults on request (`NotifyFaults`: deliver several
times, hold back to deliver later and so out of order, drop so only polling finds the
order, sign badly). Each marketplace serves its own order list and detail calls from
`self.orders` in its real shapes, and builds its own notification (`notification()`). The
control API takes `POST /_sandbox/orders` (create), `POST /_sandbox/orders/<id>` (new
status), `POST /_sandbox/notifications/release` (deliver what was held back) and
`GET /_sandbox/orders`.
Stock changed on the marketplace's side: `stock_set_external(keys, quantity, notify=True)`
(control route `POST /_sandbox/stock`) sets a listing's quantity as a seller editing it in
the marketplace's console would, and sends the marketplace's signed stock webhook where it
has one (`stock_notification`). Stock reads pass `gate(read=True)`: the same throttle,
error and latency faults as stock calls.
`expire_tokens()` makes every issued access token expired (refresh still works);
`revoke()` makes every token and refresh token invalid (only a new authorisation helps).
"""

import random
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse

_OPTIONS = {
    "error_ratio": 0.0,
    "throttle_per_second": None,
    "latency": 0.0,
    "timeout_ratio": 0.0,
    "timeout_seconds": 5.0,
    "reject": [],
    "token_lifetime": 4 * 3600,
    "seed": 0,
    "webhook_url": "",
}
WEBHOOK_TIMEOUT = 10.0


@dataclass
class SandboxOrderLine:
    """One line of a sandbox order: the listing's keys (as `key_names` name them), the
    seller SKU, the quantity and the unit price (a string of a decimal)."""

    keys: dict[str, str]
    sku: str
    quantity: int
    price: str = "10.00"
    line_id: str = ""


@dataclass
class SandboxOrder:
    """An order as the sandbox's shop holds it; times are Unix seconds (floats)."""

    order_id: str
    status: str
    lines: list[SandboxOrderLine]
    created: float
    updated: float
    paid: float | None = None
    buyer: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)  # every status, oldest first


@dataclass(frozen=True)
class NotifyFaults:
    """How the notification of one order change is delivered."""

    copies: int = 1  # deliver this many times (duplicates)
    drop: bool = False  # never deliver (polling must find the change)
    hold: bool = False  # keep it until `notifications_release()` (so it arrives out of order)
    bad_signature: bool = False  # sign it with the wrong key


@dataclass
class Delivery:
    """One notification sent (or not) to the webhook URL."""

    order_id: str
    status: str
    http_status: int | None  # None: not sent (dropped) or the connection failed
    bad_signature: bool = False
    error: str = ""


class MarketplaceSandbox(SandboxApp):
    """The shared state and fault machinery of the marketplace sandboxes.

    Subclasses define `key_names` (the listing key names, in order, that identify a stock
    entry) and the marketplace's routes in `handle`, calling `gate()` before applying a
    stock call and `token_state()` to check an access token.
    """

    name = "marketplace"
    key_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, Any] = dict(_OPTIONS)
        self.rng = random.Random(0)  # noqa: S311 - fault injection, not security
        self.stock: dict[tuple[str, ...], int] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.refresh_tokens: set[str] = set()
        self.stock_call_times: list[float] = []  # accepted stock calls (monotonic)
        self.call_times: list[float] = []  # every stock call that reached the gate
        self._window: deque[float] = deque()
        self._read_window: deque[float] = deque()
        self.counts = {"stock_calls": 0, "throttled": 0, "errors": 0, "timeouts": 0}
        self.counts |= {"auth_refused": 0, "bad_signature": 0, "items_rejected": 0}
        self.counts |= {"refreshes": 0, "reads": 0, "read_throttled": 0, "external_edits": 0}
        self.orders: dict[str, SandboxOrder] = {}
        self.held: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.deliveries: list[Delivery] = []
        self._order_seq = 0

    # --- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.options = dict(_OPTIONS)
            self.rng = random.Random(0)  # noqa: S311
            self.stock.clear()
            self.access_tokens.clear()
            self.refresh_tokens.clear()
            self.stock_call_times.clear()
            self.call_times.clear()
            self._window.clear()
            self._read_window.clear()
            self.counts = dict.fromkeys(self.counts, 0)
            self.orders.clear()
            self.held.clear()
            self.deliveries.clear()
            self._order_seq = 0

    def configure(self, **options: Any) -> dict:
        unknown = sorted(set(options) - set(_OPTIONS) - {"listings"})
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)}")
        listings = options.pop("listings", None)
        for name in ("error_ratio", "timeout_ratio"):
            if name in options and not 0 <= float(options[name]) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if "reject" in options and not isinstance(options["reject"], list):
            raise ValueError("reject must be a list of listing keys")
        with self._lock:
            self.options.update(options)
            if "seed" in options:
                self.rng = random.Random(options["seed"])  # noqa: S311
        if listings is not None:
            self.seed_listings(listings)
        return {**self.options, "listings": len(self.stock)}

    def key_of(self, keys: dict[str, Any]) -> tuple[str, ...]:
        """The stock entry a listing's keys name (an integer id and its string are one key).

        Only a missing or null key is empty: 0 is a real id (Shopee's item without models).
        """
        return tuple("" if keys.get(name) is None else str(keys[name]) for name in self.key_names)

    def seed_listings(self, listings: Iterable[dict[str, Any]], quantity: int = 0) -> None:
        """Make listings known to the shop (each a dict of keys, optionally `quantity`)."""
        with self._lock:
            for listing in listings:
                self.stock.setdefault(self.key_of(listing), int(listing.get("quantity", quantity)))

    def quantity(self, keys: dict[str, Any]) -> int | None:
        """A listing's quantity as the shop holds it (None: unknown listing)."""
        return self.stock.get(self.key_of(keys))

    def is_rejected(self, keys: dict[str, Any]) -> bool:
        wanted = self.key_of(keys)
        return any(self.key_of(rejected) == wanted for rejected in self.options["reject"])

    # --- tokens ---------------------------------------------------------------------------------

    def issue_tokens(self) -> tuple[str, str, int]:
        """A new access token and refresh token; returns (access, refresh, lifetime s)."""
        access = secrets.token_hex(16)
        refresh = secrets.token_hex(16)
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
            self.refresh_tokens.add(refresh)
        return access, refresh, lifetime

    def token_state(self, token: str | None) -> str:
        """'ok', 'expired' or 'invalid'."""
        expiry = self.access_tokens.get(token or "")
        if expiry is None:
            return "invalid"
        return "ok" if expiry > time.time() else "expired"

    def refresh_consume(self, refresh: str | None, *, single_use: bool) -> bool:
        """Whether a refresh token is valid (and, if single use, spend it)."""
        with self._lock:
            if not refresh or refresh not in self.refresh_tokens:
                return False
            if single_use:
                self.refresh_tokens.discard(refresh)
            self.counts["refreshes"] += 1
            return True

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self.access_tokens:
                self.access_tokens[token] = time.time() - 1

    def revoke(self) -> None:
        with self._lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def credentials(self) -> dict[str, Any]:
        """Channel credentials this sandbox accepts, with freshly issued tokens."""
        raise NotImplementedError

    # --- faults ---------------------------------------------------------------------------------

    def gate(self, *, read: bool = False) -> str | None:
        """Decide the fate of a stock call (or, `read`, a stock read) before it is answered.

        Returns None (go on), 'throttle' or 'error'; sleeps for latency and timeouts. An
        accepted call's time is recorded (for the rate the sandbox saw). Reads have a
        throttle window of their own (marketplaces count quotas per API) and are counted
        apart (`reads`, `read_throttled`), so push figures stay the pushes'.
        """
        options = self.options
        if read:
            return self._read_gate()
        with self._lock:
            self.call_times.append(time.monotonic())
        if options["latency"]:
            time.sleep(float(options["latency"]))
        with self._lock:
            roll_timeout = self.rng.random() < float(options["timeout_ratio"])
        if roll_timeout:
            with self._lock:
                self.counts["timeouts"] += 1
            time.sleep(float(options["timeout_seconds"]))
            return "error"
        now = time.monotonic()
        with self._lock:
            limit = options["throttle_per_second"]
            if limit is not None:
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) >= float(limit):
                    self.counts["throttled"] += 1
                    return "throttle"
                self._window.append(now)
            if self.rng.random() < float(options["error_ratio"]):
                self.counts["errors"] += 1
                return "error"
            self.counts["stock_calls"] += 1
            self.stock_call_times.append(now)
        return None

    def _read_gate(self) -> str | None:
        options = self.options
        if options["latency"]:
            time.sleep(float(options["latency"]))
        now = time.monotonic()
        with self._lock:
            limit = options["throttle_per_second"]
            if limit is not None:
                while self._read_window and now - self._read_window[0] >= 1.0:
                    self._read_window.popleft()
                if len(self._read_window) >= float(limit):
                    self.counts["read_throttled"] += 1
                    return "throttle"
                self._read_window.append(now)
            if self.rng.random() < float(options["error_ratio"]):
                self.counts["errors"] += 1
                return "error"
            self.counts["reads"] += 1
        return None

    # --- stock changed on the marketplace's side --------------------------------------------

    def stock_set_external(
        self, keys: dict[str, Any], quantity: int, *, notify: bool = True
    ) -> Delivery | None:
        """Change a listing's stock as the seller would in the marketplace's own console
        (behind our back), and, with `notify`, send the marketplace's signed stock webhook
        to the `webhook_url` option (where the marketplace has one: `stock_notification`).
        Returns the delivery (None: not notified). `KeyError` for an unknown listing."""
        key = self.key_of(keys)
        with self._lock:
            if key not in self.stock:
                raise KeyError(f"unknown listing {dict(keys)}")
            self.stock[key] = int(quantity)
            self.counts["external_edits"] += 1
        if not notify:
            return None
        message = self.stock_notification(dict(zip(self.key_names, key, strict=True)), quantity)
        if message is None:
            return None
        body, headers = message
        return self._deliver("", f"stock {quantity}", body, headers)

    def stock_notification(
        self, keys: dict[str, str], quantity: int
    ) -> tuple[bytes, dict[str, str]] | None:
        """The raw body and signed headers of the marketplace's stock webhook for a listing
        (None: the marketplace sends none). Subclasses that have one override this."""
        return None

    def max_calls_in_window(self, window: float = 1.0, *, accepted_only: bool = False) -> int:
        """The most stock calls (or only accepted ones) seen in any `window` seconds."""
        times = sorted(self.stock_call_times if accepted_only else self.call_times)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _control(self, request: SandboxRequest) -> SandboxResponse:
        action = request.path.removeprefix("/_sandbox/").strip("/")
        if action == "stock" and request.method == "GET":
            with self._lock:
                rows = [
                    {**dict(zip(self.key_names, key, strict=True)), "quantity": quantity}
                    for key, quantity in self.stock.items()
                ]
            return SandboxResponse.json(200, rows)
        if action == "stock" and request.method == "POST":
            return self._stock_control(request)
        if action == "expire-tokens" and request.method == "POST":
            self.expire_tokens()
            return SandboxResponse.json(200, {"expired": True})
        if action == "revoke" and request.method == "POST":
            self.revoke()
            return SandboxResponse.json(200, {"revoked": True})
        if action == "credentials" and request.method == "POST":
            # Fresh credentials for a new channel, for a sandbox in another process.
            return SandboxResponse.json(200, self.credentials())
        if action == "counts" and request.method == "GET":
            return SandboxResponse.json(200, dict(self.counts))
        if action.startswith("orders") or action.startswith("notifications"):
            return self._orders_control(request, action)
        return super()._control(request)

    def _stock_control(self, request: SandboxRequest) -> SandboxResponse:
        """`POST /_sandbox/stock` {"keys": {...}, "quantity": n, "notify": true}: edit a
        listing's stock behind the seller tool's back (see `stock_set_external`)."""
        try:
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("keys"), dict):
                raise ValueError("the body must be an object with keys and quantity")
            quantity = body.get("quantity")
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
                raise ValueError("quantity must be a whole number of at least 0")
            delivery = self.stock_set_external(
                body["keys"], quantity, notify=bool(body.get("notify", True))
            )
        except KeyError as exc:
            return SandboxResponse.json(404, {"error": str(exc)})
        except (TypeError, ValueError) as exc:
            return SandboxResponse.json(400, {"error": str(exc)})
        return SandboxResponse.json(
            200,
            {
                "quantity": self.quantity(body["keys"]),
                "delivery": asdict(delivery) if delivery is not None else None,
            },
        )

    # --- orders ---------------------------------------------------------------------------------

    def orders_numbered_after(self, count: int) -> None:
        """Number the next orders after `count` earlier ones: a shop that has sold before (a
        new sandbox standing in for the same shop goes on where the last one stopped, so the
        shop's order numbers stay unique)."""
        with self._lock:
            self._order_seq = max(self._order_seq, int(count))

    def order_id_new(self) -> str:
        """A new order id in the marketplace's style (subclasses override)."""
        with self._lock:
            self._order_seq += 1
            return f"{self.name.upper()}{int(time.time())}{self._order_seq:05d}"

    def order_create(
        self,
        *,
        lines: list[dict[str, Any]],
        status: str,
        order_id: str | None = None,
        buyer: dict[str, Any] | None = None,
        faults: NotifyFaults | None = None,
    ) -> SandboxOrder:
        """Place an order (lines: dicts of `keys`, `sku`, `quantity`, optional `price`) in
        `status` (a marketplace status) and notify the webhook URL."""
        now = time.time()
        order = SandboxOrder(
            order_id=order_id or self.order_id_new(),
            status=status,
            lines=[
                SandboxOrderLine(
                    keys={k: str(v) for k, v in dict(line.get("keys") or {}).items()},
                    sku=str(line.get("sku") or ""),
                    quantity=int(line["quantity"]),
                    price=str(line.get("price", "10.00")),
                    line_id=str(line.get("line_id") or f"{n + 1}{secrets.randbelow(10**6):06d}"),
                )
                for n, line in enumerate(lines)
            ],
            created=now,
            updated=now,
            paid=now if self.status_is_paid(status) else None,
            buyer=buyer or {"name": "Sandbox Buyer", "phone": "+6500000000"},
            history=[status],
        )
        with self._lock:
            if order.order_id in self.orders:
                raise ValueError(f"order {order.order_id} exists")
            self.orders[order.order_id] = order
        self.notify(order, faults or NotifyFaults())
        return order

    def order_update(
        self, order_id: str, *, status: str, faults: NotifyFaults | None = None
    ) -> SandboxOrder:
        """Move an order to `status`; its update time moves strictly forward. Notifies."""
        with self._lock:
            order = self.orders[order_id]
            order.status = status
            # Marketplaces stamp updates in whole seconds (Lazada: ms); a later change must
            # never share the earlier one's time, or it could not be told apart.
            order.updated = max(time.time(), order.updated + 1.0)
            if order.paid is None and self.status_is_paid(status):
                order.paid = order.updated
            order.history.append(status)
        self.notify(order, faults or NotifyFaults())
        return order

    def status_is_paid(self, status: str) -> bool:
        """Whether an order in this (marketplace) status has been paid (subclasses say)."""
        return status not in self.unpaid_statuses

    unpaid_statuses: tuple[str, ...] = ()

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """The raw body and headers of the marketplace's notification of this order's
        current status, signed for the `webhook_url` option (badly if asked)."""
        raise NotImplementedError

    def notify(self, order: SandboxOrder, faults: NotifyFaults) -> list[Delivery]:
        """Send (or drop, or hold) the notification of an order's current state."""
        status = order.status
        if faults.drop:
            delivery = Delivery(order.order_id, status, None, error="dropped")
            with self._lock:
                self.deliveries.append(delivery)
            return [delivery]
        body, headers = self.notification(order, bad_signature=faults.bad_signature)
        if faults.hold:
            with self._lock:
                self.held.append((order.order_id, status, body, headers))
            return []
        return [
            self._deliver(order.order_id, status, body, headers, bad=faults.bad_signature)
            for _ in range(max(1, faults.copies))
        ]

    def notifications_release(self) -> list[Delivery]:
        """Deliver every held notification, oldest first (after newer ones went out)."""
        with self._lock:
            held, self.held = self.held, []
        return [self._deliver(*entry) for entry in held]

    def _deliver(
        self, order_id: str, status: str, body: bytes, headers: dict, *, bad: bool = False
    ) -> Delivery:
        url = self.options["webhook_url"]
        if not url:
            raise ValueError("set the webhook_url option first")
        try:
            response = requests.post(url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
            delivery = Delivery(order_id, status, response.status_code, bad_signature=bad)
        except requests.RequestException as exc:
            delivery = Delivery(order_id, status, None, bad_signature=bad, error=str(exc)[:200])
        with self._lock:
            self.deliveries.append(delivery)
        return delivery

    def _orders_control(self, request: SandboxRequest, action: str) -> SandboxResponse:
        if action == "notifications/release" and request.method == "POST":
            return SandboxResponse.json(
                200, [asdict(delivery) for delivery in self.notifications_release()]
            )
        if action == "orders" and request.method == "GET":
            with self._lock:
                return SandboxResponse.json(200, [asdict(o) for o in self.orders.values()])
        try:
            body = request.json() or {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            faults = NotifyFaults(**(body.pop("faults", None) or {}))
            if action == "orders" and request.method == "POST":
                order = self.order_create(faults=faults, **body)
                return SandboxResponse.json(201, asdict(order))
            order_id = action.removeprefix("orders/")
            if action.startswith("orders/") and request.method == "POST":
                if order_id not in self.orders:
                    return SandboxResponse.json(404, {"error": "unknown order"})
                order = self.order_update(order_id, faults=faults, **body)
                return SandboxResponse.json(200, asdict(order))
        except (TypeError, ValueError, KeyError) as exc:
            return SandboxResponse.json(400, {"error": str(exc)})
        return SandboxResponse.json(404, {"error": "unknown sandbox control"})
