"""Every warehouse of a TikTok Shop SKU in each of its inventory updates.

TikTok refuses an update of a SKU that leaves out one of the warehouses assigned to it
(Partner Center, Products API "Update Inventory": "You must include all warehouse IDs
assigned to this SKU ... Do not omit any"; 12019028 / 12052037). The push sends every
listing of the SKU it has (`TikTokAdapter.push_group`), but a warehouse may have no listing
here, and a listing the seller excluded from syncing is sent only at the figure we last
knew. So before the update the adapter reads the batch's SKUs once (`POST
/product/202309/inventory/search`, whose `warehouse_inventory[]` lists every warehouse of a
SKU with its `available_quantity`, the quantity "Update Inventory" sets) and
`warehouses_completed` adds each warehouse no update names at the figure read, and puts
passengers (`StockUpdate.passenger`) at the figure read rather than the one we knew.

The race this leaves: a sale on TikTok from such a warehouse between the read and the
write is undone by the write (the warehouse shows the unit again). It is accepted because
the window is one round trip (well under a second), the warehouse is one we do not manage
(a sale there moves no stock of ours, and its owner sets it again from wherever they manage
it), TikTok offers no compare-and-set to close it, and without the row every update of the
SKU is refused for good.
"""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from channels_sync.adapters.base import StockUpdate, answer_int, answer_list, answer_text


class WarehouseReadError(Exception):
    """The read lists a warehouse of a SKU without a figure we can send back."""


def sku_warehouses(sku: Mapping[str, Any]) -> dict[str, int]:
    """Warehouse id -> available quantity of one inventory search `skus[]` entry.

    Raises `WarehouseReadError` for a warehouse listed without a whole-number figure: its
    row cannot be left out, nor sent at a made-up figure.
    """
    read: dict[str, int] = {}
    for row in answer_list(sku.get("warehouse_inventory")):
        if not isinstance(row, dict):
            continue
        warehouse_id = answer_text(row.get("warehouse_id"))
        if not warehouse_id:
            continue
        quantity = answer_int(row.get("available_quantity"))
        if quantity is None:
            raise WarehouseReadError(
                f"no available_quantity for warehouse {warehouse_id} of SKU "
                f"{answer_text(sku.get('id'))}"
            )
        read[warehouse_id] = quantity
    return read


def warehouses_completed(
    updates: Sequence[StockUpdate], read: Mapping[str, dict[str, int]]
) -> tuple[list[StockUpdate], list[str]]:
    """The rows to send for `updates`, given `read` (SKU id -> `sku_warehouses`), and the
    warehouses added ("sku:warehouse").

    A passenger whose warehouse was read goes at the figure read. Each warehouse of a read
    SKU that no update names is added at its figure (listing id 0: no listing of ours). A SKU
    that was not read, or one with an update naming no warehouse (a single-warehouse
    listing, which TikTok takes only alone), is sent as it is.
    """
    by_sku: dict[str, list[StockUpdate]] = {}
    for update in updates:
        by_sku.setdefault(str(update.keys.get("sku_id", "")), []).append(update)
    rows: list[StockUpdate] = []
    added: list[str] = []
    for sku_id, sku_updates in by_sku.items():
        figures = read.get(sku_id)
        named = set()
        for update in sku_updates:
            warehouse_id = str(update.keys.get("warehouse_id") or "")
            named.add(warehouse_id)
            if figures is not None and update.passenger and warehouse_id in figures:
                update = replace(update, quantity=figures[warehouse_id])
            rows.append(update)
        if figures is None or "" in named:
            continue
        base = {name: sku_updates[0].keys[name] for name in ("product_id", "sku_id")}
        for warehouse_id, quantity in figures.items():
            if warehouse_id not in named:
                rows.append(
                    StockUpdate(
                        listing_id=0,
                        keys={**base, "warehouse_id": warehouse_id},
                        quantity=quantity,
                        passenger=True,
                    )
                )
                added.append(f"{sku_id}:{warehouse_id}")
    return rows, added
