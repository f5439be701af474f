"""A fake Shopee Open Platform v2 shop: signed calls, stock update and read-back, tokens,
orders and their pushes.

Routes (all take the common parameters in the query string, marketplaces.md 1.2):
- `POST /api/v2/product/update_stock` (shop API): one `item_id`, 1-50 `stock_list` models;
- `GET /api/v2/product/get_model_list?item_id=` and
  `GET /api/v2/product/get_item_base_info?item_id_list=a,b` (<= 50 ids) (shop API);
- `POST /api/v2/auth/access_token/get` (public API): refresh; the refresh token is single
  use, a spent one is refused;
- `POST /api/v2/auth/token/get` (public API): trade a code from `issue_code()` (single use,
  10 minutes) for the first tokens;
- `GET /api/v2/order/get_order_list` (shop API): orders whose `create_time` or
  `update_time` (`time_range_field`) lies in [time_from, time_to] (both included, at most
  15 days apart), `page_size` 1-100 a page, walked with `cursor` / `more` / `next_cursor`;
  the `order_page_size` option caps the page size so tests can make many pages;
- `GET /api/v2/order/get_order_detail?order_sn_list=a,b` (shop API, 1-50 numbers): the
  orders Shopee knows, with the `response_optional_fields` asked for; unknown numbers are
  left out and named in `warning`.

Orders are pushed (code 3) to the `webhook_url` option, signed over url + "|" + body with
the partner key (see `notification`).

The sandbox checks `sign` with its own HMAC code, the timestamp (Unix seconds, within 5
minutes), the partner, the shop and the access token. Shopee documents the body shapes but
not its HTTP statuses, so these are the sandbox's choice: success and per-model failures
200, parameter errors 400, auth and sign errors 403, throttle 429 (`error_too_many_request`,
itself UNCONFIRMED), server errors 500. With the `module_prefix` option every error code
carries its API module, as Shopee's often do (`product.error_param`,
`product.error_busi_update_stock_failed`). An expired access token is answered in Shopee's
documented wording, `error_auth` "Invalid access_token." (the same as an unknown token), or,
with `token_errors="community"`, as the `invalid_access_token` code community clients check.

Stock is held per (item_id, model_id, location_id); model "0" is an item without models and
location "" a model of a seller without locations. `update_stock` checks as Shopee does
(v2.product.update_stock): a model named twice in one `stock_list` is refused
(`error_param`); a model kept at locations must name one of them in every `seller_stock` row,
and a model without locations must name none; the stock cannot go below the model's reserved
(promotion) stock (`reserved_stock` option); a shop in holiday mode (`holiday_mode`) edits
nothing. Those refusals are `error_auth` with Shopee's messages, for the whole call.
Read-back reports `seller_stock[]` per location.
"""

import hashlib
import hmac
import json
import secrets
import time
from decimal import Decimal
from typing import Any

from channels_sync.sandbox.base import MarketplaceSandbox, SandboxOrder, SandboxOrderLine
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

DEFAULT_PARTNER_ID = 2001887
DEFAULT_PARTNER_KEY = "test_partner_key"
DEFAULT_SHOP_ID = 1
PUSH_ORDER_STATUS = 3  # the push code of an order status change
PUSH_RESERVED_STOCK_CHANGE = 8  # a model's reserved stock changed
ORDER_SN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORDER_RANGE_MAX = 15 * 24 * 3600  # get_order_list: time_to - time_from, seconds
ORDER_PAGE_MAX = 100
ORDER_DETAIL_MAX = 50
TIMESTAMP_WINDOW = 300  # seconds either side of the sandbox's clock
CODE_LIFETIME = 600

UPDATE_STOCK = "/api/v2/product/update_stock"
MODEL_LIST = "/api/v2/product/get_model_list"
ITEM_BASE_INFO = "/api/v2/product/get_item_base_info"
ORDER_LIST = "/api/v2/order/get_order_list"
ORDER_DETAIL = "/api/v2/order/get_order_detail"
REFRESH = "/api/v2/auth/access_token/get"
CODE_EXCHANGE = "/api/v2/auth/token/get"
SHOP_ROUTES = {
    UPDATE_STOCK: "POST",
    MODEL_LIST: "GET",
    ITEM_BASE_INFO: "GET",
    ORDER_LIST: "GET",
    ORDER_DETAIL: "GET",
}
PUBLIC_ROUTES = {REFRESH: "POST", CODE_EXCHANGE: "POST"}

REJECTED_REASON = "Stock can not be less than the reserved stock of an ongoing promotion."
UNKNOWN_MODEL_REASON = "Model not found."
# update_stock's `error_auth` messages for refusals that are not about credentials
# (v2.product.update_stock, error codes).
RESERVED_MESSAGE = "Stock should be larger than reserved stock."
LOCATION_MISSING_MESSAGE = "Lack of location_id, please double check."
LOCATION_WRONG_MESSAGE = (
    "The location_id input is not matched the shop's location_id(more/wrong), please double check."
)
LOCATION_FORBIDDEN_MESSAGE = "You do not have right to use seller location_id, please check."
HOLIDAY_MESSAGE = "Please wait for the holiday mode set then to edit item."
TOKEN_ERROR_STYLES = ("official", "community")


def _hmac_hex(key: str, message: bytes) -> str:
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


class ShopeeSandbox(MarketplaceSandbox):
    """One Shopee partner app and one authorised shop (see the module docstring).

    `credentials()` hands out the channel credentials for it; `issue_code()` a seller
    authorisation code; `push_headers(url, body)` signs a push as Shopee would.
    """

    name = "shopee"
    key_names = ("item_id", "model_id", "location_id")

    def __init__(
        self,
        *,
        partner_id: int = DEFAULT_PARTNER_ID,
        partner_key: str = DEFAULT_PARTNER_KEY,
        shop_id: int = DEFAULT_SHOP_ID,
    ) -> None:
        super().__init__()
        self.partner_id = int(partner_id)
        self.partner_key = partner_key
        self.shop_id = int(shop_id)
        self.updates: list[tuple[dict[str, str], int]] = []
        self.codes: dict[str, float] = {}  # authorisation code -> expiry (epoch seconds)
        self.options.update(_SHOPEE_OPTIONS)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.updates.clear()
            self.codes.clear()
            self.options.update(_SHOPEE_OPTIONS)

    def configure(self, **options: Any) -> dict:
        """The shared options, and Shopee's own: `order_page_size` (at most this many orders
        a list page; None: the `page_size` asked for), `module_prefix` (error codes carry
        their module), `token_errors` ("official" or "community", see the module docstring),
        `reserved_stock` (a list of `{"item_id", "model_id", "reserved"}`: a model's reserved
        promotion stock) and `holiday_mode` (the shop edits no stock)."""
        own = {name: options.pop(name) for name in list(options) if name in _SHOPEE_OPTIONS}
        page_size = own.get("order_page_size")
        if page_size is not None and (not _is_int(page_size) or page_size < 1):
            raise ValueError("order_page_size must be a positive integer")
        if own.get("token_errors", "official") not in TOKEN_ERROR_STYLES:
            raise ValueError(f"token_errors must be one of {', '.join(TOKEN_ERROR_STYLES)}")
        reserved = own.get("reserved_stock", [])
        if not isinstance(reserved, list) or not all(
            isinstance(row, dict) and _is_int(row.get("reserved")) for row in reserved
        ):
            raise ValueError("reserved_stock must be a list of {item_id, model_id, reserved}")
        configured = super().configure(**options)
        with self._lock:
            self.options.update(own)
        return {**configured, **{name: self.options[name] for name in _SHOPEE_OPTIONS}}

    def is_rejected(self, keys: dict[str, Any]) -> bool:
        """Whether a `reject` entry names this model (and its location, when it names one)."""
        return any(
            _same(rejected, keys, ("item_id", "model_id"))
            and (not rejected.get("location_id") or _same(rejected, keys, ("location_id",)))
            for rejected in self.options["reject"]
        )

    def reserved(self, item: str, model: str) -> int:
        """A model's reserved (promotion) stock, as the `reserved_stock` option sets it."""
        for row in self.options["reserved_stock"]:
            if _same(row, {"item_id": item, "model_id": model}, ("item_id", "model_id")):
                return int(row["reserved"])
        return 0

    def model_locations(self, item: str, model: str) -> dict[str, int]:
        """A model's stock by location ("" for a model without locations); {} if unknown."""
        with self._lock:
            return {
                key[2]: quantity
                for key, quantity in self.stock.items()
                if key[0] == item and key[1] == model
            }

    def describe(self) -> str:
        return (
            f"{UPDATE_STOCK} and friends (partner_id {self.partner_id}, partner_key "
            f"{self.partner_key}, shop_id {self.shop_id}; signed query, timestamp in seconds)"
        )

    # --- credentials and pushes -----------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        """Fresh channel credentials: this partner and shop, and tokens just issued."""
        access, refresh, lifetime = self.issue_tokens()
        expires = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + lifetime))
        return {
            "partner_id": str(self.partner_id),
            "partner_key": self.partner_key,
            "shop_id": str(self.shop_id),
            "access_token": access,
            "refresh_token": refresh,
            "access_token_expires_at": expires,
        }

    def issue_code(self) -> str:
        """A seller authorisation code for `auth/token/get` (single use, 10 minutes)."""
        code = secrets.token_hex(16)
        with self._lock:
            self.codes[code] = time.time() + CODE_LIFETIME
        return code

    def expected_sign(
        self, path: str, timestamp: str, access_token: str | None = None, shop_id: str = ""
    ) -> str:
        """The `sign` this sandbox expects (public API when `access_token` is None)."""
        base = f"{self.partner_id}{path}{timestamp}"
        if access_token is not None:
            base += f"{access_token}{shop_id}"
        return _hmac_hex(self.partner_key, base.encode("utf-8"))

    def push_headers(self, url: str, body: bytes) -> dict[str, str]:
        """The headers of a push of `body` to `url`, signed with the partner key."""
        signature = _hmac_hex(self.partner_key, url.encode("utf-8") + b"|" + body)
        return {"Authorization": signature, "Content-Type": "application/json"}

    def push_body(self, code: int, data: dict[str, Any]) -> bytes:
        """A push message's raw body, e.g. code 3 with `{"ordersn", "status", ...}`."""
        message = {"data": data, "shop_id": self.shop_id, "code": code}
        message["timestamp"] = int(time.time())
        return json.dumps(message).encode("utf-8")

    # --- orders ---------------------------------------------------------------------------------

    # An order waiting for payment (UNPAID) or for a payment/antifraud check (PENDING).
    unpaid_statuses = ("UNPAID", "PENDING")

    def order_id_new(self) -> str:
        """A new `order_sn` in Shopee's style: YYMMDD and 8 upper-case letters and digits
        (e.g. "201214JAJXU6G7", the get_order_detail sample)."""
        while True:
            suffix = "".join(secrets.choice(ORDER_SN_ALPHABET) for _ in range(8))
            order_sn = time.strftime("%y%m%d", time.gmtime()) + suffix
            with self._lock:
                if order_sn not in self.orders:
                    return order_sn

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """The order status push (code 3) of the order's current status, signed for the
        `webhook_url` option: `Authorization` = HMAC-SHA256 hex of url + "|" + body with
        the partner key (a wrong key when `bad_signature`)."""
        data = {
            "items": [],
            "ordersn": order.order_id,
            "status": order.status,
            "completed_scenario": "",
            "update_time": int(order.updated),
        }
        body = self.push_body(PUSH_ORDER_STATUS, data)
        key = self.partner_key + "-wrong" if bad_signature else self.partner_key
        signature = _hmac_hex(key, self.options["webhook_url"].encode("utf-8") + b"|" + body)
        return body, {"Authorization": signature, "Content-Type": "application/json"}

    def stock_notification(self, keys: dict[str, str], quantity: int) -> tuple[bytes, dict]:
        """A reserved stock change push (code 8) naming the item and model, signed for the
        `webhook_url` option. Shopee pushes code 8 when a model's reserved stock moves (an
        order, a promotion), never the stock itself; the sandbox sends one for an edit behind
        our back so the stock-report path can be exercised (the receiver reads the stock)."""
        model = keys.get("model_id") or "0"
        data = {
            "shop_id": self.shop_id,
            "item_id": int(keys["item_id"]) if keys["item_id"].isdigit() else keys["item_id"],
            "variation_id": int(model) if model.isdigit() else model,
            "action": "stock_adjust",
            "changed_values": [{"name": "reserved_stock", "old": 0, "new": 0}],
        }
        body = self.push_body(PUSH_RESERVED_STOCK_CHANGE, data)
        signature = _hmac_hex(
            self.partner_key, self.options["webhook_url"].encode("utf-8") + b"|" + body
        )
        return body, {"Authorization": signature, "Content-Type": "application/json"}

    # --- HTTP -----------------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        response = self._route(request)
        if not self.options["module_prefix"]:
            return response
        return _module_prefixed(response, request.path)

    def _route(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path.rstrip("/")
        method = SHOP_ROUTES.get(path) or PUBLIC_ROUTES.get(path)
        if method is None or request.method != method:
            return _error(404, "error_not_found", "Wrong path or method.")
        refused = self._check_auth(request, path, shop=path in SHOP_ROUTES)
        if refused is not None:
            return refused
        if path == UPDATE_STOCK:
            return self._update_stock(request)
        if path == MODEL_LIST:
            return self._model_list(request)
        if path == ITEM_BASE_INFO:
            return self._item_base_info(request)
        if path == ORDER_LIST:
            return self._order_list(request)
        if path == ORDER_DETAIL:
            return self._order_detail(request)
        if path == REFRESH:
            return self._refresh(request)
        return self._token_get(request)

    def _check_auth(
        self, request: SandboxRequest, path: str, *, shop: bool
    ) -> SandboxResponse | None:
        """Refuse a call whose common parameters, sign or token are wrong (None: go on)."""
        names = ["partner_id", "timestamp", "sign"] + (["access_token", "shop_id"] if shop else [])
        values = {name: _param(request, name) for name in names}
        missing = [name for name in names if not values[name]]
        if missing:
            return _error(400, "error_param", f"Missing required param: {missing[0]}.")
        timestamp = values["timestamp"]
        if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > TIMESTAMP_WINDOW:
            return _error(400, "error_param", "Invalid timestamp.")
        if values["partner_id"] != str(self.partner_id):
            self.count("auth_refused")
            return _error(403, "error_auth", "Invalid partner_id.")
        expected = self.expected_sign(
            path, timestamp, values.get("access_token") if shop else None, values.get("shop_id", "")
        )
        if not hmac.compare_digest(values["sign"].encode(), expected.encode()):
            self.count("bad_signature")
            return _error(403, "error_sign", "Wrong sign.")
        if not shop:
            return None
        if values["shop_id"] != str(self.shop_id):
            self.count("auth_refused")
            return _error(403, "error_auth", "The shop is not authorised by this partner.")
        state = self.token_state(values["access_token"])
        community = self.options["token_errors"] == "community"  # noqa: S105 - a style name
        if state == "expired" and community:
            self.count("auth_refused")
            return _error(403, "invalid_access_token", "access_token expired")
        if state != "ok":
            self.count("auth_refused")
            return _error(403, "error_auth", "Invalid access_token.")
        return None

    def _update_stock(self, request: SandboxRequest) -> SandboxResponse:
        fate = self.gate()
        if fate == "throttle":
            return _error(429, "error_too_many_request", "Too many requests, try again later.")
        if fate == "error":
            return _error(500, "error_server", "Internal server error, please try again later.")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "error_param", "The body is not JSON.")
        item_id = body.get("item_id") if isinstance(body, dict) else None
        stock_list = body.get("stock_list") if isinstance(body, dict) else None
        if not _is_int(item_id):
            return _error(400, "error_param", "item_id must be an integer.")
        if not isinstance(stock_list, list) or not 1 <= len(stock_list) <= 50:
            return _error(400, "error_param", "stock_list must hold 1 to 50 models.")
        item = str(item_id)
        with self._lock:
            known_item = any(key[0] == item for key in self.stock)
        if not known_item:
            return _error(400, "error_item_not_found", "Item not found.")
        models = [
            entry.get("model_id", 0) if isinstance(entry, dict) else None for entry in stock_list
        ]
        named = [str(model) for model in models if _is_int(model)]
        if len(named) != len(set(named)):
            return _error(400, "error_param", "Duplicate model_id in stock_list.")
        if self.options["holiday_mode"]:
            self.count("items_rejected")
            return _error(403, "error_auth", HOLIDAY_MESSAGE)

        failure_list, accepted = [], []
        for entry, model_id in zip(stock_list, models, strict=True):
            if not _is_int(model_id):
                failure_list.append({"model_id": model_id, "failed_reason": "Invalid model_id."})
                continue
            seller_stock = entry.get("seller_stock")
            if (
                not isinstance(seller_stock, list)
                or not seller_stock
                or not all(
                    isinstance(row, dict) and _is_int(row.get("stock")) and row["stock"] >= 0
                    for row in seller_stock
                )
            ):
                failure_list.append({"model_id": model_id, "failed_reason": "Invalid stock."})
                continue
            keys = {"item_id": item, "model_id": str(model_id)}
            locations = self.model_locations(item, str(model_id))
            if not locations:
                failure_list.append({"model_id": model_id, "failed_reason": UNKNOWN_MODEL_REASON})
                continue
            rows = {str(row.get("location_id") or ""): row["stock"] for row in seller_stock}
            refusal = _location_refusal(
                set(locations), [str(r.get("location_id") or "") for r in seller_stock]
            )
            if refusal is not None:
                self.count("items_rejected")
                return _error(403, "error_auth", refusal)
            if sum({**locations, **rows}.values()) < self.reserved(item, str(model_id)):
                self.count("items_rejected")
                return _error(403, "error_auth", RESERVED_MESSAGE)
            if self.is_rejected(keys):
                self.count("items_rejected")
                failure_list.append({"model_id": model_id, "failed_reason": REJECTED_REASON})
                continue
            accepted.append((model_id, rows))

        success_list = []
        for model_id, rows in accepted:
            for location, stock in rows.items():
                keys = {"item_id": item, "model_id": str(model_id), "location_id": location}
                with self._lock:
                    self.stock[self.key_of(keys)] = stock
                    self.updates.append(
                        (
                            {**keys} if location else {"item_id": item, "model_id": str(model_id)},
                            stock,
                        )
                    )
                success_list.append({"model_id": model_id, "location_id": location, "stock": stock})

        error, message = "", ""
        if failure_list:
            error = "error_busi_update_stock_failed"
            message = "Some models failed to update stock, please check failure_list."
        return _answer(
            200,
            {"success_list": success_list, "failure_list": failure_list},
            error=error,
            message=message,
        )

    def _stock_info(self, item: str, model: str) -> dict[str, Any]:
        """A model's `stock_info_v2`: a `seller_stock` row per location."""
        locations = self.model_locations(item, model)
        reserved = self.reserved(item, model)
        total = sum(locations.values())
        return {
            "summary_info": {
                "total_reserved_stock": reserved,
                "total_available_stock": max(0, total - reserved),
            },
            "seller_stock": [
                {"location_id": location, "stock": stock, "if_saleable": True}
                for location, stock in sorted(locations.items())
            ],
            "shopee_stock": [],
        }

    def _read_refused(self) -> SandboxResponse | None:
        fate = self.gate(read=True)
        if fate == "throttle":
            return _error(429, "error_too_many_request", "Too many requests, try again later.")
        if fate == "error":
            return _error(500, "error_server", "Internal server error, please try again later.")
        return None

    def _model_list(self, request: SandboxRequest) -> SandboxResponse:
        refused = self._read_refused()
        if refused is not None:
            return refused
        item = _param(request, "item_id")
        if not item.isdigit():
            return _error(400, "error_param", "item_id must be an integer.")
        with self._lock:
            model_ids = list(dict.fromkeys(key[1] for key in self.stock if key[0] == item))
        if not model_ids:
            return _error(400, "error_item_not_found", "Item not found.")
        models = [
            {
                "model_id": int(model) if model.isdigit() else model,
                "model_sku": f"SKU-{item}-{model}",
                "stock_info_v2": self._stock_info(item, model),
            }
            for model in model_ids
            if model != "0"
        ]
        return _answer(200, {"tier_variation": [], "model": models})

    def _item_base_info(self, request: SandboxRequest) -> SandboxResponse:
        refused = self._read_refused()
        if refused is not None:
            return refused
        ids = [part for part in _param(request, "item_id_list").split(",") if part]
        if not ids or len(ids) > 50 or not all(part.isdigit() for part in ids):
            return _error(400, "error_param", "item_id_list must hold 1 to 50 integer ids.")
        item_list = []
        for item in ids:
            with self._lock:
                models = {key[1] for key in self.stock if key[0] == item}
            if not models:
                continue  # Shopee leaves unknown items out of the list
            row: dict[str, Any] = {
                "item_id": int(item),
                "item_status": "NORMAL",
                "has_model": any(model != "0" for model in models),
            }
            if "0" in models:
                row["stock_info_v2"] = self._stock_info(item, "0")
            item_list.append(row)
        return _answer(200, {"item_list": item_list})

    def _order_list(self, request: SandboxRequest) -> SandboxResponse:
        field = _param(request, "time_range_field")
        if field not in ("create_time", "update_time"):
            return _error(400, "error_param", "Invalid time_range_field.")
        time_from, time_to = _param(request, "time_from"), _param(request, "time_to")
        if not time_from.isdigit() or not time_to.isdigit():
            return _error(400, "error_param", "time_from and time_to must be Unix seconds.")
        if int(time_from) > int(time_to):
            return _error(400, "error_param", "time_from must not be after time_to.")
        if int(time_to) - int(time_from) > ORDER_RANGE_MAX:
            return _error(400, "error_param", "The time range cannot exceed 15 days.")
        page_size = _param(request, "page_size")
        if not page_size.isdigit() or not 1 <= int(page_size) <= ORDER_PAGE_MAX:
            return _error(400, "error_param", "page_size must be between 1 and 100.")
        cursor = _param(request, "cursor")
        if cursor and not cursor.isdigit():
            return _error(400, "error_param", "Invalid cursor.")
        wanted_status = _param(request, "order_status")
        optional = set(_param(request, "response_optional_fields").split(","))

        size = min(int(page_size), self.options.get("order_page_size") or ORDER_PAGE_MAX)
        offset = int(cursor or 0)
        with self._lock:
            matches = sorted(
                (
                    order
                    for order in self.orders.values()
                    if int(time_from) <= _order_time(order, field) <= int(time_to)
                    and (not wanted_status or order.status == wanted_status)
                ),
                key=lambda order: (_order_time(order, field), order.order_id),
            )
        page = matches[offset : offset + size]
        more = offset + size < len(matches)
        order_list = []
        for order in page:
            row: dict[str, Any] = {"order_sn": order.order_id}
            if "order_status" in optional:
                row["order_status"] = order.status
            order_list.append(row)
        return _answer(
            200,
            {
                "more": more,
                "order_list": order_list,
                "next_cursor": str(offset + size) if more else "",
            },
        )

    def _order_detail(self, request: SandboxRequest) -> SandboxResponse:
        wanted = [part for part in _param(request, "order_sn_list").split(",") if part]
        if not 1 <= len(wanted) <= ORDER_DETAIL_MAX:
            return _error(400, "error_param", "order_sn_list must hold 1 to 50 order_sn.")
        optional = set(_param(request, "response_optional_fields").split(","))
        with self._lock:
            found = [self.orders[sn] for sn in dict.fromkeys(wanted) if sn in self.orders]
            order_list = [self._order_detail_row(order, optional) for order in found]
        missing = [sn for sn in wanted if sn not in {order.order_id for order in found}]
        warning = f"order_sn not found: {','.join(missing)}" if missing else ""
        return _answer(200, {"order_list": order_list}, warning=warning)

    def _order_detail_row(self, order: SandboxOrder, optional: set[str]) -> dict[str, Any]:
        """One order of `get_order_detail`, with the optional fields asked for."""
        row: dict[str, Any] = {
            "order_sn": order.order_id,
            "region": "SG",
            "currency": "SGD",
            "cod": False,
            "order_status": order.status,
            "create_time": int(order.created),
            "update_time": int(order.updated),
            "days_to_ship": 3,
            "ship_by_date": int(order.created) + 3 * 86400,
        }
        name = str(order.buyer.get("name") or "")
        phone = str(order.buyer.get("phone") or "")
        optional_values = {
            "buyer_user_id": int(hashlib.sha256(name.encode()).hexdigest()[:8], 16),
            "buyer_username": name.lower().replace(" ", "_"),
            "recipient_address": {
                "name": name,
                "phone": phone,
                "town": "",
                "district": "",
                "city": "Singapore",
                "state": "",
                "region": "SG",
                "zipcode": "018956",
                "full_address": "1 Sandbox Way, Singapore 018956",
            },
            "item_list": [_item_row(line) for line in order.lines],
            "total_amount": float(sum(Decimal(line.price) * line.quantity for line in order.lines)),
            "payment_method": "Credit Card/Debit Card",
        }
        if order.paid is not None:
            optional_values["pay_time"] = int(order.paid)
        row.update({key: value for key, value in optional_values.items() if key in optional})
        return row

    def _token_body(self, request: SandboxRequest) -> tuple[dict | None, SandboxResponse | None]:
        try:
            body = request.json()
        except ValueError:
            return None, _error(400, "error_param", "The body is not JSON.")
        if not isinstance(body, dict):
            return None, _error(400, "error_param", "The body must be a JSON object.")
        if body.get("partner_id") != self.partner_id or body.get("shop_id") != self.shop_id:
            # Shopee wants both as integers, and they must name this partner and shop.
            self.count("auth_refused")
            return None, _error(403, "error_auth", "Invalid partner_id or shop_id.")
        return body, None

    def _tokens_answer(self) -> SandboxResponse:
        access, refresh, lifetime = self.issue_tokens()
        data = {
            "access_token": access,
            "refresh_token": refresh,
            "expire_in": lifetime,
            "partner_id": self.partner_id,
            "shop_id": self.shop_id,
            "error": "",
            "message": "",
            "request_id": secrets.token_hex(16),
        }
        return SandboxResponse.json(200, data)

    def _refresh(self, request: SandboxRequest) -> SandboxResponse:
        body, refused = self._token_body(request)
        if refused is not None:
            return refused
        if not self.refresh_consume(str(body.get("refresh_token") or ""), single_use=True):
            self.count("auth_refused")
            return _error(403, "error_auth", "Invalid refresh_token.")
        return self._tokens_answer()

    def _token_get(self, request: SandboxRequest) -> SandboxResponse:
        body, refused = self._token_body(request)
        if refused is not None:
            return refused
        with self._lock:
            expiry = self.codes.pop(str(body.get("code") or ""), None)
        if expiry is None or expiry < time.time():
            self.count("auth_refused")
            return _error(403, "error_auth", "Invalid code.")
        return self._tokens_answer()


def _order_time(order: SandboxOrder, field: str) -> int:
    """An order's create or update time as Shopee reports it: whole seconds."""
    return int(order.created if field == "create_time" else order.updated)


def _item_row(line: SandboxOrderLine) -> dict[str, Any]:
    """One `item_list` entry; an item without models has model_id 0 and its SKU on the item."""
    item_id, model_id = line.keys.get("item_id", ""), line.keys.get("model_id") or "0"
    has_model = model_id != "0"
    price = float(Decimal(line.price))
    return {
        "item_id": int(item_id) if item_id.isdigit() else item_id,
        "item_name": f"Sandbox item {item_id}",
        "item_sku": "" if has_model else line.sku,
        "model_id": int(model_id) if model_id.isdigit() else model_id,
        "model_name": f"Variation {model_id}" if has_model else "",
        "model_sku": line.sku if has_model else "",
        "model_quantity_purchased": line.quantity,
        "model_original_price": price,
        "model_discounted_price": price,
        "wholesale": False,
        "weight": 0.1,
        "add_on_deal": False,
        "main_item": False,
        "add_on_deal_id": 0,
        "promotion_type": "",
        "promotion_id": 0,
        "order_item_id": int(item_id) if item_id.isdigit() else item_id,
        "promotion_group_id": 0,
        "image_info": {"image_url": ""},
    }


_SHOPEE_OPTIONS: dict[str, Any] = {
    "order_page_size": None,
    "module_prefix": False,
    "token_errors": "official",
    "reserved_stock": [],
    "holiday_mode": False,
}


def _same(first: dict[str, Any], second: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Whether two sets of keys agree on `names` (an integer id and its string are one)."""
    return all(str(first.get(name, "")) == str(second.get(name, "")) for name in names)


def _location_refusal(locations: set[str], named: list[str]) -> str | None:
    """update_stock's refusal of a model's `seller_stock` locations, if any: a model kept at
    locations must name one of them in every row, one without locations names none."""
    kept = locations - {""}
    if not kept:
        return LOCATION_FORBIDDEN_MESSAGE if any(named) else None
    if not all(named):
        return LOCATION_MISSING_MESSAGE
    if not set(named) <= kept:
        return LOCATION_WRONG_MESSAGE
    return None


def _module_prefixed(response: SandboxResponse, path: str) -> SandboxResponse:
    """The answer with its error code prefixed by the API module (`/api/v2/product/...` ->
    `product.error_param`), as Shopee often answers."""
    parts = path.strip("/").split("/")
    module = parts[2] if len(parts) > 3 and parts[:2] == ["api", "v2"] else ""
    try:
        data = json.loads(response.body) if isinstance(response.body, str | bytes) else None
    except ValueError:
        return response
    error = data.get("error") if isinstance(data, dict) else None
    if not module or not isinstance(error, str) or not error or "." in error:
        return response
    data["error"] = f"{module}.{error}"
    return SandboxResponse(response.status, json.dumps(data), response.headers)


def _param(request: SandboxRequest, name: str) -> str:
    values = request.query.get(name) or [""]
    return values[0]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _answer(
    status: int,
    response: dict | None,
    *,
    error: str = "",
    message: str = "",
    warning: str = "",
) -> SandboxResponse:
    data: dict[str, Any] = {
        "error": error,
        "message": message,
        "warning": warning,
        "request_id": secrets.token_hex(16),
    }
    if response is not None:
        data["response"] = response
    return SandboxResponse.json(status, data)


def _error(status: int, error: str, message: str) -> SandboxResponse:
    return _answer(status, None, error=error, message=message)


register_sandbox("shopee", ShopeeSandbox)
