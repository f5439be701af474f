"""What orders do when other apps tell them something (subscribed in `OrdersConfig.ready`)."""

from collections.abc import Sequence

import structlog
from django.db import transaction

from channels_sync.models import ChannelListing
from orders.models import Order
from orders.tasks import reprocess_parked

logger = structlog.get_logger(__name__)


def parked_orders_reprocess_on_commit(listings: Sequence[ChannelListing]) -> None:
    """After the listings' commit, queue a reprocess of their channels' parked orders.

    Only channels that have parked orders are queued. A queue outage is logged: the orders
    stay parked, and the next update of each (or staff's "reprocess") maps them.
    """
    channel_ids = sorted({listing.channel_id for listing in listings})
    parked = sorted(
        set(
            Order.objects.filter(channel_id__in=channel_ids, needs_mapping=True)
            .values_list("channel_id", flat=True)
            .distinct()
        )
    )
    if not parked:
        return

    def enqueue() -> None:
        for channel_id in parked:
            try:
                reprocess_parked.apply_async(kwargs={"channel_id": channel_id})
            except Exception:
                logger.exception("orders.reprocess_enqueue_failed", channel_id=channel_id)

    transaction.on_commit(enqueue)
