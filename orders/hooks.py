"""Listeners told, after the commit, that an order was confirmed (once per order).

An order is confirmed when it is first paid (or further along), or when it is created
through the API. `orders` knows nothing of what reacts (the order -> ERP sync subscribes
here from its `AppConfig.ready`). Listeners run after the commit of the transaction that
confirmed the order, never for one that rolls back; a listener's failure is logged and does
not stop the others.
"""

from collections.abc import Callable

import structlog
from django.db import transaction

logger = structlog.get_logger(__name__)

OrderConfirmedListener = Callable[[int], None]

_listeners: list[OrderConfirmedListener] = []


def order_confirmed_subscribe(listener: OrderConfirmedListener) -> None:
    """Call `listener(order_id)` for every confirmed order (once per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def order_confirmed_unsubscribe(listener: OrderConfirmedListener) -> None:
    """Stop telling `listener` (tests)."""
    if listener in _listeners:
        _listeners.remove(listener)


def order_confirmed(order_id: int) -> None:
    """Tell the listeners, once the current transaction commits, that the order is confirmed.

    The caller (an order service holding the order's row lock) calls this once per order:
    the first time it sets `confirmed_at`.
    """

    def announce() -> None:
        for listener in list(_listeners):
            try:
                listener(order_id)
            except Exception:
                logger.exception("order.confirmed_listener_failed", order_id=order_id)

    transaction.on_commit(announce)
