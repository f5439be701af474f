"""Listeners told, after the commit, that an order was confirmed or cancelled (once each).

An order is confirmed when it is first paid (or further along), or when it is created
through the API; it is cancelled when it moves to cancelled (from the marketplace, the API
or the console). `orders` knows nothing of what reacts (the order -> ERP sync subscribes
here from its `AppConfig.ready`). Listeners run after the commit of the transaction that
made the change, never for one that rolls back; a listener's failure is logged and does
not stop the others.
"""

from collections.abc import Callable

import structlog
from django.db import transaction

logger = structlog.get_logger(__name__)

OrderListener = Callable[[int], None]
OrderConfirmedListener = OrderListener

_listeners: dict[str, list[OrderListener]] = {"confirmed": [], "cancelled": []}


def order_confirmed_subscribe(listener: OrderListener) -> None:
    """Call `listener(order_id)` for every confirmed order (once per listener)."""
    _subscribe("confirmed", listener)


def order_confirmed_unsubscribe(listener: OrderListener) -> None:
    """Stop telling `listener` (tests)."""
    _unsubscribe("confirmed", listener)


def order_cancelled_subscribe(listener: OrderListener) -> None:
    """Call `listener(order_id)` for every order that becomes cancelled (once per listener)."""
    _subscribe("cancelled", listener)


def order_cancelled_unsubscribe(listener: OrderListener) -> None:
    """Stop telling `listener` (tests)."""
    _unsubscribe("cancelled", listener)


def _subscribe(event: str, listener: OrderListener) -> None:
    if listener not in _listeners[event]:
        _listeners[event].append(listener)


def _unsubscribe(event: str, listener: OrderListener) -> None:
    if listener in _listeners[event]:
        _listeners[event].remove(listener)


def order_confirmed(order_id: int) -> None:
    """Tell the listeners, once the current transaction commits, that the order is confirmed.

    The caller (an order service holding the order's row lock) calls this once per order:
    the first time it sets `confirmed_at`.
    """
    _announce("confirmed", order_id)


def order_cancelled(order_id: int) -> None:
    """Tell the listeners, once the current transaction commits, that the order is cancelled.

    The caller (an order service holding the order's row lock) calls this when it moves the
    order to cancelled, which happens once (nothing follows cancelled).
    """
    _announce("cancelled", order_id)


def _announce(event: str, order_id: int) -> None:
    def announce() -> None:
        for listener in list(_listeners[event]):
            try:
                listener(order_id)
            except Exception:
                logger.exception("order.listener_failed", hook=event, order_id=order_id)

    transaction.on_commit(announce)
