"""Reads of the conflict console: conflicts, one with its history, and what resolving reads."""

from django.db.models import Prefetch, QuerySet

from channels_sync.errors import ConflictNotFound
from channels_sync.models import Channel, ChannelListing, Conflict, ConflictEvent
from channels_sync.selectors import LISTING_FIELDS, plan

MAX_ID = 2**63


def conflict_list() -> QuerySet[Conflict]:
    """Conflicts, newest first, with their channel, listing and product (one query a page)."""
    return Conflict.objects.select_related("channel", "listing", "product").order_by(
        "-detected_at", "-id"
    )


def conflict_get(*, conflict_id: int | str, history: bool = False) -> Conflict:
    """One conflict (with its events when `history`), or `conflict_not_found`.

    Ids that are not numbers, or past the 64-bit range, are not found (never a 500).
    """
    try:
        pk = int(str(conflict_id))
    except (TypeError, ValueError) as exc:
        raise ConflictNotFound(details={"id": str(conflict_id)[:100]}) from exc
    if not 0 < pk < MAX_ID:
        raise ConflictNotFound(details={"id": str(pk)[:100]})
    query = Conflict.objects.select_related("channel", "listing", "product")
    if history:
        query = query.prefetch_related(
            Prefetch("events", queryset=ConflictEvent.objects.order_by("created_at", "id"))
        )
    conflict = query.filter(pk=pk).first()
    if conflict is None:
        raise ConflictNotFound(details={"id": str(pk)})
    return conflict


def listing_desired_quantity(listing: ChannelListing) -> int | None:
    """The quantity the push would send the listing now (its allocation), or None if gone."""
    rows = list(ChannelListing.objects.filter(pk=listing.pk).values(*LISTING_FIELDS))
    if not rows:
        return None
    channel = Channel.objects.get(pk=listing.channel_id)
    return plan(channel, rows)[0].quantity


def channel_ranks_first(conflict: Conflict) -> bool:
    """Whether the conflict's channel comes first (priority, then id) among the vendor's
    active channels that list its product: the source-priority rule's test."""
    first = (
        Channel.objects.filter(
            vendor_id=conflict.vendor_id, active=True, listings__product_id=conflict.product_id
        )
        .order_by("priority", "id")
        .values_list("pk", flat=True)
        .first()
    )
    return first is not None and first == conflict.channel_id
