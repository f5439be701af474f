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

    The parked orders are looked for after the commit, not inside the listing batch: an
    order applied meanwhile (parked because it could not see these listings yet) has then
    more chance to be seen. Only channels that have parked orders are queued. What this
    still misses (an order committing after the look, a queue outage, which is logged) the
    periodic `orders.reprocess_parked_all` maps.
    """
    channel_ids = sorted({listing.channel_id for listing in listings})
    if not channel_ids:
        return

    def enqueue() -> None:
        parked = sorted(
            set(
                Order.objects.filter(channel_id__in=channel_ids, needs_mapping=True)
                .order_by()
                .values_list("channel_id", flat=True)
                .distinct()
            )
        )
        for channel_id in parked:
            try:
                reprocess_parked.apply_async(kwargs={"channel_id": channel_id})
            except Exception:
                logger.exception("orders.reprocess_enqueue_failed", channel_id=channel_id)

    # robust: a failure here is logged and never fails the committed listings.
    transaction.on_commit(enqueue, robust=True)
