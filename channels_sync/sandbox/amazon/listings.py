"""The Amazon sandbox's Listings Items API v2021-08-01 (patchListingsItem, getListingsItem).

`PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=..` takes `{"productType",
"patches": [{"op", "path", "value"}]}`; a body that is not that shape is 400 `InvalidInput`.
A patch of `/attributes/fulfillment_availability` (`op` replace or merge) whose value is one
`{"fulfillment_channel_code": "DEFAULT", "quantity": n >= 0}` sets the SKU's quantity and
answers `{"sku", "status": "ACCEPTED", "submissionId", "issues": []}` (Amazon applies an
accepted patch later; the sandbox at once). A bad value, or a SKU in `reject`, answers
`status: INVALID` with an `ERROR` issue (codes made up: Amazon's issue codes are not
published as a list). An unknown SKU is 404 `NOT_FOUND`. A wrong seller id is 403.
`GET` of the same path answers `fulfillmentAvailability` when `includedData` asks for it.

The SKU is the rest of the path after the seller id, so a SKU with `/` (sent as `%2F`) works.
"""

import secrets
from typing import Any

from channels_sync.sandbox.amazon.common import wire_path
from core.sandbox import SandboxRequest, SandboxResponse

PREFIX = "/listings/2021-08-01/items/"
QUANTITY_PATH = "/attributes/fulfillment_availability"
PATCH_OPS = ("add", "replace", "merge", "delete")
ISSUE_REJECTED = "90001001"  # made up: the listing's offer is locked for updates
ISSUE_INVALID_VALUE = "90001002"  # made up: the quantity is not a whole number >= 0


class ListingRoutes:
    """Routes of the Listings Items API (mixed into `AmazonSandbox`)."""

    def listing_route(self, request: SandboxRequest) -> SandboxResponse | None:
        path = wire_path(request.path)
        if not path.startswith(PREFIX) or request.method not in ("PATCH", "GET"):
            return None
        seller_id, _, sku = path.removeprefix(PREFIX).partition("/")
        operation = "patchListingsItem" if request.method == "PATCH" else "getListingsItem"
        refused = self.checked(request, operation) or self.marketplace_refused(
            request, "marketplaceIds"
        )
        if refused is not None:
            return refused
        if seller_id != self.seller_id:
            self.count("auth_refused")
            return self.error(403, "Unauthorized", "Access to requested resource is denied.")
        if not sku:
            return self.error(400, "InvalidInput", "The SKU is missing from the path.")
        if request.method == "GET":
            return self._listing_get(request, sku)
        return self._listing_patch(request, sku)

    def _listing_get(self, request: SandboxRequest, sku: str) -> SandboxResponse:
        fate = self.gate(read=True)
        if fate == "throttle":
            return self.throttled()
        if fate == "error":
            return self.error(500, "InternalFailure", "We encountered an internal error.")
        quantity = self.quantity({"seller_sku": sku})
        if quantity is None:
            return self._not_found(sku)
        included = {
            name
            for value in request.query.get("includedData", ["summaries"])
            for name in value.split(",")
        }
        body: dict[str, Any] = {"sku": sku}
        if "summaries" in included:
            body["summaries"] = [
                {
                    "marketplaceId": self.marketplace_id,
                    "asin": _asin(sku),
                    "productType": "PRODUCT",
                    "conditionType": "new_new",
                    "status": ["BUYABLE"],
                    "itemName": f"Sandbox item {sku}",
                }
            ]
        if "fulfillmentAvailability" in included:
            body["fulfillmentAvailability"] = [
                {"fulfillmentChannelCode": "DEFAULT", "quantity": quantity}
            ]
        if "issues" in included:
            body["issues"] = []
        return self.answer(200, body, "getListingsItem")

    def _listing_patch(self, request: SandboxRequest, sku: str) -> SandboxResponse:
        try:
            body = request.json()
        except ValueError:
            body = None
        problem = _patch_shape_problem(body)
        if problem:
            return self.error(400, "InvalidInput", problem)
        fate = self.gate()
        if fate == "throttle":
            return self.throttled()
        if fate == "error":
            return self.error(500, "InternalFailure", "We encountered an internal error.")
        with self._lock:
            self.patch_bodies.append(body)
        keys = {"seller_sku": sku}
        if self.quantity(keys) is None:
            return self._not_found(sku)
        issue = None
        quantity = None
        for patch in body["patches"]:
            if patch["path"] != QUANTITY_PATH:
                continue  # other attributes are taken and not kept
            quantity = quantity_of(patch)
            if quantity is None:
                issue = (ISSUE_INVALID_VALUE, "'quantity' must be a whole number of 0 or more.")
        if issue is None and self.is_rejected(keys):
            issue = (ISSUE_REJECTED, "The offer for this SKU is locked and cannot be updated.")
        if issue is not None:
            self.count("items_rejected")
            return self.answer(
                200,
                {
                    "sku": sku,
                    "status": "INVALID",
                    "submissionId": secrets.token_hex(16),
                    "issues": [
                        {
                            "code": issue[0],
                            "message": issue[1],
                            "severity": "ERROR",
                            "attributeNames": ["fulfillment_availability"],
                            "categories": ["INVALID_ATTRIBUTE"],
                        }
                    ],
                },
                "patchListingsItem",
            )
        if quantity is not None:
            with self._lock:
                self.stock[self.key_of(keys)] = quantity
                self.updates.append((sku, quantity))
        return self.answer(
            200,
            {"sku": sku, "status": "ACCEPTED", "submissionId": secrets.token_hex(16), "issues": []},
            "patchListingsItem",
        )

    def _not_found(self, sku: str) -> SandboxResponse:
        return self.error(
            404, "NOT_FOUND", f"SKU '{sku[:80]}' not found in marketplace {self.marketplace_id}"
        )


def quantity_of(patch: dict[str, Any]) -> int | None:
    """The DEFAULT quantity a fulfillment_availability patch sets (None: not a valid one)."""
    value = patch.get("value")
    if patch.get("op") not in ("replace", "merge", "add") or not isinstance(value, list):
        return None
    if len(value) != 1 or not isinstance(value[0], dict):
        return None
    entry = value[0]
    quantity = entry.get("quantity")
    if entry.get("fulfillment_channel_code") != "DEFAULT":
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        return None
    return quantity


def _patch_shape_problem(body: Any) -> str:
    """What makes a patch request body invalid ('' when it is a valid request)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    product_type = body.get("productType")
    if not isinstance(product_type, str) or not product_type.strip():
        return "productType is required."
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        return "patches must hold at least one patch."
    for patch in patches:
        if not isinstance(patch, dict) or patch.get("op") not in PATCH_OPS:
            return "Each patch needs an op of add, replace, merge or delete."
        if not isinstance(patch.get("path"), str) or not patch["path"].startswith("/attributes/"):
            return "Each patch needs a path under /attributes/."
    return ""


def _asin(sku: str) -> str:
    return "B0" + format(abs(hash(sku)) % 36**8, "08X")[:8]
