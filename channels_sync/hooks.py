"""Listeners told, inside the creating transaction, which channel listings were created.

A listing whose keys changed counts as created: its new keys are new to the orders.

`channels_sync` knows nothing of the apps that react to new listings (`orders` reprocesses
the orders parked for lack of one); they subscribe here from their `AppConfig.ready`. A
listener runs in the same transaction as the creation; anything it wants done after the
commit it registers with `transaction.on_commit` itself.
"""

from collections.abc import Callable, Sequence

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
