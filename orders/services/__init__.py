"""Order writes. Import from here: `from orders.services import order_apply_market`."""

from orders.services.lifecycle import Actor, transition_allowed
from orders.services.manual import (
    OrderLineInput,
    order_cancel,
    order_create,
    order_line_map,
    order_line_restock,
    order_reprocess,
    order_ship,
    orders_reprocess_parked,
    orders_reprocess_parked_all,
)
from orders.services.market import market_line_product, order_apply_market

__all__ = [
    "Actor",
    "OrderLineInput",
    "market_line_product",
    "order_apply_market",
    "order_cancel",
    "order_create",
    "order_line_map",
    "order_line_restock",
    "order_reprocess",
    "order_ship",
    "orders_reprocess_parked",
    "orders_reprocess_parked_all",
    "transition_allowed",
]
