"""Listeners told, inside the writing transaction, which stock levels changed.

`inventory` knows nothing of the apps that react to stock (channel listings, later others);
they subscribe here from their `AppConfig.ready`. A listener runs in the same transaction as
the movement, so what it writes commits or rolls back with it; anything it wants done after
the commit it registers with `transaction.on_commit` itself.

Apps that feed a vendor's physical stock from outside (the ERP) also register a reader here
(`stock_source_register`), so callers can tell (`inventory.selectors.vendor_stock_source`)
that a local correction would be overwritten, without importing those apps.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class StockChange:
    """Which levels changed: their products, or a staging table of level ids (bulk syncs)."""

    product_ids: tuple[int, ...] = ()
    # A table (in this transaction) with a column `id` holding the changed levels' ids.
    level_table: str = ""


StockChangeListener = Callable[[StockChange], None]

_listeners: list[StockChangeListener] = []
_collecting = threading.local()


def stock_change_subscribe(listener: StockChangeListener) -> None:
    """Call `listener` for every stock change (once per listener, however often subscribed)."""
    if listener not in _listeners:
        _listeners.append(listener)


def stock_changed(change: StockChange) -> None:
    """Tell every listener about a change (the caller is inside the writing transaction).

    Inside `stock_changes_collected`, product changes are gathered and told once at its end.
    """
    if not change.product_ids and not change.level_table:
        return
    pending = getattr(_collecting, "products", None)
    if pending is not None and change.product_ids and not change.level_table:
        pending.update(change.product_ids)
        return
    for listener in _listeners:
        listener(change)


@contextmanager
def stock_changes_collected() -> Iterator[None]:
    """Tell the listeners once, at the end, about every product changed inside.

    For services that write many movements in one transaction (a batch, the expiry
    sweep): listeners then lock what they mark in one ordered statement instead of product
    by product, so two such transactions cannot wait on each other in a cycle. Use it
    inside the transaction; nothing is told if the block raises. Nested use collects into
    the outermost block.
    """
    if getattr(_collecting, "products", None) is not None:
        yield
        return
    _collecting.products = set()
    try:
        yield
        products = _collecting.products
    finally:
        _collecting.products = None
    if products:
        stock_changed(StockChange(product_ids=tuple(sorted(products))))


# --- who sets a vendor's physical stock ---------------------------------------------------------

# Each answers, for a vendor id, why an outside system sets that vendor's physical stock (a
# short phrase such as "an ERP agent"), or "" when it does not.
StockSourceReader = Callable[[object], str]

_stock_sources: list[StockSourceReader] = []


def stock_source_register(reader: StockSourceReader) -> None:
    """Ask `reader(vendor_id)` whether an outside system sets a vendor's stock (once per reader).

    `erp_mapping` registers here from its `AppConfig.ready`: a vendor fed by an ERP has its
    physical stock corrected back to the ERP's figures, so a local correction would not last.
    """
    if reader not in _stock_sources:
        _stock_sources.append(reader)


def stock_sources() -> tuple[StockSourceReader, ...]:
    return tuple(_stock_sources)
