"""A fake eBay: OAuth tokens, the Sell Inventory API's stock calls, notification keys, orders.

Routes (eBay's wire format; checked with this module's own code, never the adapter's):

- `POST /identity/v1/oauth2/token`: `Authorization: Basic base64(client_id:client_secret)`
  and a form body. `grant_type=refresh_token` (with `refresh_token` and a `scope` of sell
  scopes) issues a user token; `grant_type=client_credentials` (scope
  `https://api.ebay.com/oauth/api_scope`) an application token (counted:
  `app_tokens`). Refusals are OAuth's `{"error", "error_description"}`: `invalid_client`
  (401), `invalid_grant`, `invalid_scope`, `unsupported_grant_type` (400). Refresh tokens
  are not single use (eBay does not rotate them).
- `POST /sell/inventory/v1/bulk_update_price_quantity` (user token): exactly one entry in
  `requests` (the method page's "only one SKU per call"; more is a 400 with errorId 25002),
  at most 25 offers, each offer once; the item quantity and each offer's
  `availableQuantity` must be whole numbers of at least 0 (25709). Answers one row per offer
  (`{statusCode, sku, offerId, errors?}`; a row without `offerId` when no offer is named),
  HTTP 200 when every row succeeded, else 207. Row errors: 25702 unknown SKU, 25713 an offer
  of another SKU or unknown, 25097 a `reject`ed listing (on hold), 25019 past
  `revision_limit` revisions of the offer in a UTC day (250 by default; the wording is the
  sandbox's own, eBay's is not published).
- `GET /sell/inventory/v1/inventory_item/{sku}` and `GET /sell/inventory/v1/offer?sku=`:
  the item's `availability.shipToLocationAvailability.quantity`, the SKU's offers with
  `availableQuantity`, `status` PUBLISHED and `listing.listingId`; 404 (25710) for an
  unknown SKU. Both pass the read gate.
- `GET /commerce/notification/v1/public_key/{kid}` (application token only): `{"key",
  "algorithm": "ECDSA", "digest": "SHA1"}` with the PEM's line breaks removed, as eBay
  serves it (counted: `key_fetches`). The sandbox makes its own P-256 key pair at start;
  `public_key_serve(kid, key)` serves any other key (eBay's own, for its test vector).

Calls with a missing, unknown or expired user token get 401 (errorId 1001); throttled calls
429 (errorId 2001); server errors 500 (errorId 25001). Stock is kept per offer
(`availableQuantity`) and per SKU (the item quantity); `quantity(keys)` is what the listing
shows: the smaller of the two. Orders and notifications: see `orders`.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from channels_sync.sandbox.base import Delivery, MarketplaceSandbox
from channels_sync.sandbox.ebay.orders import (
    ORDERS_PATH,
    EbayOrdersMixin,
    compact,
    errors_answer,
)
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

TOKEN_PATH = "/identity/v1/oauth2/token"  # noqa: S105 - a path
BULK_UPDATE_PATH = "/sell/inventory/v1/bulk_update_price_quantity"
ITEM_PATH = re.compile(r"^/sell/inventory/v1/inventory_item/(?P<sku>[^/]+)$")
OFFERS_PATH = "/sell/inventory/v1/offer"
KEY_PATH = re.compile(r"^/commerce/notification/v1/public_key/(?P<kid>[^/]+)$")
APP_SCOPE = "https://api.ebay.com/oauth/api_scope"
USER_SCOPES = frozenset(
    f"https://api.ebay.com/oauth/api_scope/{name}"
    for name in ("sell.inventory", "sell.inventory.readonly", "sell.fulfillment")
) | {"https://api.ebay.com/oauth/api_scope/sell.fulfillment.readonly"}
OFFERS_MAX = 25
TOKEN_LIFETIME = 7200


class EbaySandbox(EbayOrdersMixin, MarketplaceSandbox):
    """eBay: one seller's inventory items and offers, its tokens, keys and orders."""

    name = "ebay"
    key_names = ("sku", "offer_id")
    marketplace_id = "EBAY_US"
    currency = "USD"
    unpaid_statuses = ("PENDING",)

    def __init__(
        self,
        *,
        client_id: str = "SandboxS-syncstor-PRD-0a1b2c3d4-5e6f7a8b",
        client_secret: str = "PRD-sandbox0a1b2c3d4e5f-6a7b8c9d",  # noqa: S107 - a fake's
        verification_token: str = "sandbox_verification_token_0123456789_abcdefghij",  # noqa: S107
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.verification_token = verification_token
        self.items: dict[str, int] = {}
        self.listing_ids: dict[tuple[str, ...], str] = {}
        self.app_tokens: dict[str, float] = {}
        self.revisions: dict[tuple[str, ...], tuple[str, int]] = {}
        self.revision_limit = 250
        self.updates: list[dict[str, Any]] = []
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.uuid4())
        self.public_keys: dict[str, str] = {}
        self.reset()

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.options["token_lifetime"] = TOKEN_LIFETIME
            self.items.clear()
            self.listing_ids.clear()
            self.app_tokens.clear()
            self.revisions.clear()
            self.revision_limit = 250
            self.updates.clear()
            self.order_page_size = None
            self.public_keys = {self.kid: _served(self.private_key.public_key())}
            self.counts |= {"app_tokens": 0, "key_fetches": 0}

    def configure(self, **options: Any) -> dict:
        """The shared options, `revision_limit` (revisions of an offer a UTC day) and
        `order_page_size` (the most orders a list page holds; None: as `limit` asks)."""
        revision_limit = options.pop("revision_limit", self.revision_limit)
        page_size = options.pop("order_page_size", self.order_page_size)
        for name, value in (("revision_limit", revision_limit), ("order_page_size", page_size)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer")
        configured = super().configure(**options)
        with self._lock:
            self.revision_limit = revision_limit or 250
            self.order_page_size = page_size
        return {**configured, "revision_limit": revision_limit, "order_page_size": page_size}

    def seed_listings(self, listings: Any, quantity: int = 0) -> None:
        """Make offers known (dicts of `sku`, `offer_id`, optional `quantity`): each offer's
        `availableQuantity` and its SKU's item quantity start at the quantity given."""
        listings = list(listings)
        super().seed_listings(listings, quantity)
        with self._lock:
            for listing in listings:
                key = self.key_of(listing)
                start = int(listing.get("quantity", quantity))
                self.items[key[0]] = max(self.items.get(key[0], 0), start)
                self.listing_ids.setdefault(key, str(110000000000 + len(self.listing_ids) + 1))

    def quantity(self, keys: dict[str, Any]) -> int | None:
        """What the listing shows: min(item quantity, the offer's availableQuantity)."""
        key = self.key_of(keys)
        with self._lock:
            if key not in self.stock or key[0] not in self.items:
                return None
            return min(self.items[key[0]], self.stock[key])

    def listing_id_of(self, keys: dict[str, Any]) -> str:
        return self.listing_ids.get(self.key_of(keys), "")

    def stock_set_external(
        self, keys: dict[str, Any], quantity: int, *, notify: bool = True
    ) -> Delivery | None:
        """The seller edits the listing's quantity in Seller Hub: the offer shows
        `quantity` (the item quantity is raised to it if lower). eBay sends no notification
        with a quantity, so none is sent."""
        key = self.key_of(keys)
        with self._lock:
            if key not in self.stock:
                raise KeyError(f"unknown listing {dict(keys)}")
            self.stock[key] = int(quantity)
            self.items[key[0]] = max(self.items.get(key[0], 0), int(quantity))
            self.counts["external_edits"] += 1
        return None

    def credentials(self) -> dict[str, str]:
        """Fresh channel credentials: this app's keys, a user token and a refresh token."""
        access, refresh, lifetime = self.issue_tokens()
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": refresh,
            "verification_token": self.verification_token,
            "marketplace_id": self.marketplace_id,
            "access_token": access,
            "access_token_expires_at": datetime.fromtimestamp(
                time.time() + lifetime, tz=UTC
            ).isoformat(),
        }

    def describe(self) -> str:
        return (
            f"{self.name}: POST {TOKEN_PATH}, POST {BULK_UPDATE_PATH}, GET /sell/inventory/v1/"
            f"inventory_item/{{sku}}, GET {OFFERS_PATH}?sku=, GET {ORDERS_PATH}, GET "
            f"/commerce/notification/v1/public_key/{{kid}} (client_id={self.client_id})"
        )

    # --- keys and signatures ----------------------------------------------------------------

    def public_key_serve(self, kid: str, key: str) -> None:
        """Serve `key` (a PEM, line breaks removed as eBay serves them) under `kid`."""
        with self._lock:
            self.public_keys[kid] = key

    def signature_header(self, signed: bytes, *, bad: bool = False) -> str:
        """`X-EBAY-SIGNATURE` for these bytes: base64 JSON of alg, kid, DER signature and
        digest; `bad` signs with a key nobody serves (under the served kid)."""
        key = ec.generate_private_key(ec.SECP256R1()) if bad else self.private_key
        der = key.sign(signed, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - eBay's scheme
        header = {
            "alg": "ecdsa",
            "kid": self.kid,
            "signature": base64.b64encode(der).decode(),
            "digest": "SHA1",
        }
        return base64.b64encode(json.dumps(header).encode()).decode()

    def signed_notification(
        self, message: dict[str, Any], *, bad_signature: bool = False
    ) -> tuple[bytes, dict[str, str]]:
        """A notification as eBay posts it: compact JSON, signed over exactly those bytes."""
        body = compact(message)
        headers = {
            "Content-Type": "application/json",
            "X-EBAY-SIGNATURE": self.signature_header(body, bad=bad_signature),
        }
        return body, headers

    def endpoint_validate(self) -> tuple[int | None, bool]:
        """Check the `webhook_url` option as eBay does: GET it with a `challenge_code` and
        compare the answer with SHA-256(code + verification token + URL). Returns (HTTP
        status, whether the answer was right)."""
        url = self.options["webhook_url"]
        code = str(uuid.uuid4())
        try:
            response = requests.get(url, params={"challenge_code": code}, timeout=10)
        except requests.RequestException:
            return None, False
        expected = _sha256_hex(code + self.verification_token + url)
        try:
            given = response.json().get("challengeResponse", "")
        except (ValueError, AttributeError):
            given = ""
        ok = response.status_code == 200 and hmac.compare_digest(str(given), expected)
        return response.status_code, ok

    # --- routes -----------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path
        if request.method == "POST" and path == TOKEN_PATH:
            return self._token(request)
        match = KEY_PATH.match(path)
        if request.method == "GET" and match:
            return self._public_key(request, unquote(match["kid"]))
        refused = self._user_refused(request)
        if refused is not None:
            return refused
        if request.method == "POST" and path == BULK_UPDATE_PATH:
            return self._bulk_update(request)
        match = ITEM_PATH.match(path)
        if request.method == "GET" and match:
            return self._read(lambda: self._item(unquote(match["sku"])))
        if request.method == "GET" and path == OFFERS_PATH:
            sku = (request.query.get("sku") or [""])[-1]
            return self._read(lambda: self._offers(sku))
        if request.method == "GET" and path == ORDERS_PATH:
            return self._orders(request)
        return errors_answer(404, 2002, f"Resource not found: {request.method} {path}")

    def _bearer(self, request: SandboxRequest) -> str:
        value = _header(request, "Authorization")
        return value[7:].strip() if value.startswith("Bearer ") else ""

    def _user_refused(self, request: SandboxRequest) -> SandboxResponse | None:
        if self.token_state(self._bearer(request)) != "ok":
            self.count("auth_refused")
            return _oauth_refused()
        return None

    def _read(self, answer: Any) -> SandboxResponse:
        fate = self.gate(read=True)
        if fate == "throttle":
            return _throttled()
        if fate == "error":
            return _system_error()
        return answer()

    def _item(self, sku: str) -> SandboxResponse:
        with self._lock:
            quantity = self.items.get(sku)
        if quantity is None:
            return _not_found()
        return SandboxResponse.json(
            200,
            {
                "sku": sku,
                "locale": "en_US",
                "condition": "NEW",
                "product": {"title": f"Sandbox item {sku}"},
                "availability": {"shipToLocationAvailability": {"quantity": quantity}},
            },
        )

    def _offers(self, sku: str) -> SandboxResponse:
        with self._lock:
            offers = [
                {
                    "offerId": offer_id,
                    "sku": offer_sku,
                    "marketplaceId": self.marketplace_id,
                    "format": "FIXED_PRICE",
                    "availableQuantity": quantity,
                    "status": "PUBLISHED",
                    "listing": {
                        "listingId": self.listing_ids.get((offer_sku, offer_id), ""),
                        "listingStatus": "ACTIVE",
                        "soldQuantity": 0,
                    },
                }
                for (offer_sku, offer_id), quantity in sorted(self.stock.items())
                if offer_sku == sku
            ]
        if not sku or not offers:
            return _not_found()
        return SandboxResponse.json(
            200,
            {
                "href": f"{OFFERS_PATH}?sku={sku}",
                "limit": 25,
                "size": len(offers),
                "total": len(offers),
                "offers": offers,
            },
        )

    def _public_key(self, request: SandboxRequest, kid: str) -> SandboxResponse:
        token = self._bearer(request)
        with self._lock:
            expiry = self.app_tokens.get(token)
        if expiry is None or expiry <= time.time():
            self.count("auth_refused")
            return _oauth_refused()
        self.count("key_fetches")
        with self._lock:
            key = self.public_keys.get(kid)
        if key is None:
            return errors_answer(404, 195002, f"The public key {kid} was not found.")
        return SandboxResponse.json(200, {"algorithm": "ECDSA", "digest": "SHA1", "key": key})

    # --- stock ------------------------------------------------------------------------------

    def _bulk_update(self, request: SandboxRequest) -> SandboxResponse:
        try:
            body = request.json()
        except ValueError:
            body = None
        entries = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
            return _inventory_error(
                400, 25002, "Any User error. Only one SKU can be updated per call."
            )
        entry = entries[0]
        sku, offers = entry.get("sku"), entry.get("offers", [])
        ship_to = entry.get("shipToLocationAvailability")
        item_quantity = ship_to.get("quantity") if isinstance(ship_to, dict) else None
        offer_ids = [o.get("offerId") for o in offers] if isinstance(offers, list) else None
        if (
            not isinstance(sku, str)
            or not sku
            or offer_ids is None
            or len(offer_ids) > OFFERS_MAX
            or not all(isinstance(o, dict) for o in offers)
            or len(set(map(str, offer_ids))) != len(offer_ids)
        ):
            return _inventory_error(
                400, 25002, "Any User error. A SKU and at most 25 distinct offers are required."
            )
        fate = self.gate()
        if fate == "throttle":
            return _throttled()
        if fate == "error":
            return _system_error()
        rows = self._apply(sku, ship_to, item_quantity, offers)
        with self._lock:
            self.updates.append(entry)
        failed = sum(1 for row in rows if row["statusCode"] != 200)
        if failed:
            self.count("items_rejected")
        return SandboxResponse.json(207 if failed else 200, {"responses": rows})

    def _apply(
        self, sku: str, ship_to: Any, item_quantity: Any, offers: list[dict]
    ) -> list[dict[str, Any]]:
        """Apply one SKU's item and offer quantities; the rows of the answer."""
        with self._lock:
            known = sku in self.items
        item_error = None
        if not known:
            item_error = (25702, f"SKU {sku} is not available in the system")
        elif ship_to is not None and not _whole(item_quantity):
            item_error = (25709, "Invalid value for shipToLocationAvailability.quantity.")
        if not offers:
            if item_error is None and ship_to is not None:
                with self._lock:
                    self.items[sku] = item_quantity
            return [_row(sku, None, item_error)]
        rows, applied = [], []
        for offer in offers:
            offer_id = str(offer.get("offerId", ""))
            error = item_error or self._offer_error(sku, offer_id, offer)
            rows.append(_row(sku, offer_id, error))
            if error is None:
                applied.append((offer_id, offer.get("availableQuantity")))
        with self._lock:
            if item_error is None and ship_to is not None:
                self.items[sku] = item_quantity
            for offer_id, quantity in applied:
                if quantity is not None:
                    self.stock[(sku, offer_id)] = quantity
        return rows

    def _offer_error(self, sku: str, offer_id: str, offer: dict) -> tuple[int, str] | None:
        key = (sku, offer_id)
        with self._lock:
            known = key in self.stock
        if not known:
            return 25713, f"This Offer is not available : {offer_id}."
        quantity = offer.get("availableQuantity")
        if quantity is not None and not _whole(quantity):
            return 25709, "Invalid value for availableQuantity."
        if self.is_rejected({"sku": sku, "offer_id": offer_id}):
            return 25097, "This listing is on hold due to a policy violation."
        day = datetime.now(tz=UTC).date().isoformat()
        with self._lock:
            seen_day, count = self.revisions.get(key, (day, 0))
            count = count if seen_day == day else 0
            if count >= self.revision_limit:
                return 25019, "Cannot revise the listing: the daily revision limit is reached."
            self.revisions[key] = (day, count + 1)
        return None

    # --- tokens -----------------------------------------------------------------------------

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        if not self._client_ok(_header(request, "Authorization")):
            self.count("auth_refused")
            return _oauth_error("invalid_client", "client authentication failed", status=401)
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        scopes = set(form.get("scope", "").split())
        if grant == "client_credentials":
            if scopes != {APP_SCOPE}:
                return _oauth_error("invalid_scope", "the requested scope is invalid")
            token = f"v^1.1#i^1#app#{secrets.token_hex(16)}"
            with self._lock:
                self.app_tokens[token] = time.time() + TOKEN_LIFETIME
            self.count("app_tokens")
            return _token_answer(token, TOKEN_LIFETIME, "Application Access Token")
        if grant != "refresh_token":
            return _oauth_error("unsupported_grant_type", "grant type in request is not supported")
        if not scopes or not scopes <= USER_SCOPES:
            return _oauth_error("invalid_scope", "the requested scope is invalid")
        if not self.refresh_consume(form.get("refresh_token"), single_use=False):
            self.count("auth_refused")
            return _oauth_error(
                "invalid_grant",
                "the provided authorization refresh token is invalid or was issued to another "
                "client",
            )
        access = f"v^1.1#i^1#user#{secrets.token_hex(16)}"
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
        return _token_answer(access, lifetime, "User Access Token")

    def _client_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, binascii.Error):
            return False
        client_id, _, secret = decoded.partition(":")
        return client_id == self.client_id and hmac.compare_digest(secret, self.client_secret)


def _served(public_key: ec.EllipticCurvePublicKey) -> str:
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return pem.replace("\n", "")


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _row(sku: str, offer_id: str | None, error: tuple[int, str] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"statusCode": 200 if error is None else 400, "sku": sku}
    if offer_id is not None:
        row["offerId"] = offer_id
    if error is not None:
        row["errors"] = [
            {
                "errorId": error[0],
                "domain": "API_INVENTORY",
                "category": "REQUEST",
                "message": error[1],
            }
        ]
    return row


def _inventory_error(status: int, error_id: int, message: str) -> SandboxResponse:
    category = "APPLICATION" if status >= 500 else "REQUEST"
    error = {"errorId": error_id, "domain": "API_INVENTORY", "category": category}
    return SandboxResponse.json(status, {"errors": [{**error, "message": message}]})


def _oauth_refused() -> SandboxResponse:
    error = {"errorId": 1001, "domain": "OAuth", "category": "REQUEST"}
    return SandboxResponse.json(401, {"errors": [{**error, "message": "Invalid access token"}]})


def _throttled() -> SandboxResponse:
    error = {"errorId": 2001, "domain": "ACCESS", "category": "REQUEST"}
    return SandboxResponse.json(429, {"errors": [{**error, "message": "Too many requests"}]})


def _system_error() -> SandboxResponse:
    return _inventory_error(500, 25001, "A system error has occurred.")


def _oauth_error(error: str, description: str, *, status: int = 400) -> SandboxResponse:
    return SandboxResponse.json(status, {"error": error, "error_description": description})


def _not_found() -> SandboxResponse:
    return _inventory_error(
        404,
        25710,
        "We didn't find the resource/entity you are requesting. Please verify the request",
    )


def _token_answer(token: str, lifetime: int, kind: str) -> SandboxResponse:
    return SandboxResponse.json(
        200, {"access_token": token, "expires_in": lifetime, "token_type": kind}
    )


def _header(request: SandboxRequest, name: str) -> str:
    lowered = name.lower()
    return next((v for k, v in request.headers.items() if k.lower() == lowered), "")


register_sandbox("ebay", EbaySandbox)
