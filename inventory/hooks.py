"""Listeners told, inside the writing transaction, which stock levels changed.

`inventory` knows nothing of the apps that react to stock (channel listings, later others);
they subscribe here from their `AppConfig.ready`. A listener runs in the same transaction as
the movement, so what it writes commits or rolls back with it; anything it wants done after
the commit it registers with `transaction.on_commit` itself.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StockChange:
    """Which levels changed: their products, or a staging table of level ids (bulk syncs)."""

    product_ids: tuple[int, ...] = ()
    # A table (in this transaction) with a column `id` holding the changed levels' ids.
    level_table: str = ""


StockChangeListener = Callable[[StockChange], None]

_listeners: list[StockChangeListener] = []


def stock_change_subscribe(listener: StockChangeListener) -> None:
    """Call `listener` for every stock change (once per listener, however often subscribed)."""
    if listener not in _listeners:
        _listeners.append(listener)


def stock_changed(change: StockChange) -> None:
    """Tell every listener about a change (the caller is inside the writing transaction)."""
    if not change.product_ids and not change.level_table:
        return
    for listener in _listeners:
        listener(change)
