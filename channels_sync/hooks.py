"""Listeners told, inside the creating transaction, which channel listings were created; and
the reader of orders that the conflict console asks about an order.

A listing whose keys changed counts as created: its new keys are new to the orders.

`channels_sync` knows nothing of the apps that react to new listings (`orders` reprocesses
the orders parked for lack of one); they subscribe here from their `AppConfig.ready`. A
listener runs in the same transaction as the creation; anything it wants done after the
commit it registers with `transaction.on_commit` itself. Likewise `orders` registers the
reader that tells the conflict console what an order's conflicts are found by
(`OrderFacts`): orders depend on channels, not the other way round.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from channels_sync.models import ChannelListing

ListingCreatedListener = Callable[[Sequence[ChannelListing]], None]

_listeners: list[ListingCreatedListener] = []


def listing_created_subscribe(listener: ListingCreatedListener) -> None:
    """Call `listener(listings)` for every batch of new listings (once per listener)."""
    if listener not in _listeners:
        _listeners.append(listener)


def listings_created(listings: Sequence[ChannelListing]) -> None:
    """Tell every listener about new listings (the caller is inside the creating transaction)."""
    if not listings:
        return
    for listener in _listeners:
        listener(listings)


# --- what the conflict console asks about an order ----------------------------------------------


@dataclass(frozen=True)
class OrderFacts:
    """What the conflicts naming an order are found by (see `conflicts_naming_order`)."""

    order_id: int
    vendor_id: uuid.UUID
    references: tuple[str, ...]  # its marketplace order id and its number
    product_ids: tuple[int, ...]  # the products of its lines
    created_at: datetime


OrderFactsReader = Callable[[int], OrderFacts | None]

_order_readers: list[OrderFactsReader] = []


def order_facts_register(reader: OrderFactsReader) -> None:
    """Ask `reader(order_id)` for an order's facts (None: no such order); `orders` registers
    its reader from its `AppConfig.ready`."""
    if reader not in _order_readers:
        _order_readers.append(reader)


def order_facts(order_id: int) -> OrderFacts | None:
    """The order's facts from the first reader that knows it, else None."""
    for reader in _order_readers:
        facts = reader(order_id)
        if facts is not None:
            return facts
    return None


# --- orders a channel has not applied yet -----------------------------------------------------

OrdersPendingReader = Callable[[int, datetime], bool]

_pending_readers: list[OrdersPendingReader] = []


def orders_pending_register(reader: OrdersPendingReader) -> None:
    """Ask `reader(channel_id, before)` whether the channel has orders notified or listed
    before that moment and not applied yet; `webhooks` registers its reader (its stored,
    unprocessed order events) from its `AppConfig.ready`."""
    if reader not in _pending_readers:
        _pending_readers.append(reader)


def orders_pending(channel_id: int, before: datetime) -> bool:
    """Whether any reader knows of orders of the channel from before `before` still to apply."""
    return any(reader(channel_id, before) for reader in _pending_readers)
