"""Inventory writes. Import from here: `from inventory.services import stock_reserve`."""

from inventory.services.batch import (
    BatchRejected,
    MutationRequest,
    stock_mutate,
    stock_mutate_batch,
)
from inventory.services.bulk import LevelSyncResult, LevelTarget, stock_levels_sync
from inventory.services.catalog import (
    product_create,
    product_update,
    products_bulk_create,
    warehouse_create,
    warehouse_default_check,
    warehouse_default_ensure,
    warehouse_default_set,
    warehouse_update,
)
from inventory.services.reservations import (
    reservations_expire,
    stock_commit,
    stock_release,
    stock_reserve,
)
from inventory.services.stock import (
    Origin,
    StockMutation,
    stock_adjust,
    stock_level_limits_check,
    stock_level_set_limits,
    stock_set,
    stock_transfer,
)

__all__ = [
    "BatchRejected",
    "LevelSyncResult",
    "LevelTarget",
    "MutationRequest",
    "Origin",
    "StockMutation",
    "product_create",
    "product_update",
    "products_bulk_create",
    "reservations_expire",
    "stock_adjust",
    "stock_commit",
    "stock_level_limits_check",
    "stock_level_set_limits",
    "stock_levels_sync",
    "stock_mutate",
    "stock_mutate_batch",
    "stock_release",
    "stock_reserve",
    "stock_set",
    "stock_transfer",
    "warehouse_create",
    "warehouse_default_check",
    "warehouse_default_ensure",
    "warehouse_default_set",
    "warehouse_update",
]
