"""Reads of the conflict console: conflicts, one with its history, and what resolving reads."""

import re
from datetime import timedelta

from django.db.models import Count, Prefetch, Q, QuerySet

from channels_sync.errors import ConflictNotFound
from channels_sync.hooks import OrderFacts, order_facts
from channels_sync.models import Channel, ChannelListing, Conflict, ConflictEvent
from channels_sync.selectors import LISTING_FIELDS, plan

MAX_ID = 2**63
# Clocks of two workers may differ: a conflict written by one may carry a time a little
# before the creation time of an order it names, written by another.
CLOCK_SKEW = timedelta(hours=1)
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


def conflict_list() -> QuerySet[Conflict]:
    """Conflicts, newest first, with their channel, listing and product (one query a page)."""
    return Conflict.objects.select_related("channel", "listing", "product").order_by(
        "-detected_at", "-id"
    )


def conflict_get(*, conflict_id: int | str, history: bool = False) -> Conflict:
    """One conflict (with its events when `history`), or `conflict_not_found`.

    Only an id written the one canonical way (ASCII digits, no sign, no leading zero, no
    space, within the 64-bit range) is looked up; any other spelling is not found (never
    a 500, and never another spelling of the same conflict).
    """
    text = str(conflict_id)
    if not _CANONICAL_ID.fullmatch(text) or int(text) >= MAX_ID:
        raise ConflictNotFound(details={"id": text[:100]})
    pk = int(text)
    query = Conflict.objects.select_related("channel", "listing", "product")
    if history:
        query = query.prefetch_related(
            Prefetch("events", queryset=ConflictEvent.objects.order_by("created_at", "id"))
        )
    conflict = query.filter(pk=pk).first()
    if conflict is None:
        raise ConflictNotFound(details={"id": str(pk)})
    return conflict


def conflicts_naming_order(facts: OrderFacts) -> QuerySet[Conflict]:
    """The oversell and duplicate-order conflicts whose details name the order.

    Works on every database (SQLite has no JSON containment lookup): the candidates are
    the vendor's conflicts of those kinds written since the order came in whose reference
    is the order's marketplace id or number, or, for an oversell, about one of its
    products; each candidate's `details["orders"]` is then read, so the result is exact.
    """
    ids = [
        pk
        for pk, details in order_conflict_candidates(facts).values_list("pk", "details")
        if _names_order(details, facts.order_id)
    ]
    return Conflict.objects.filter(pk__in=ids)


def order_conflict_candidates(facts: OrderFacts) -> QuerySet[Conflict]:
    """The conflicts that may name the order (see `conflicts_naming_order`): plain column
    lookups only."""
    return Conflict.objects.filter(
        vendor_id=facts.vendor_id,
        kind__in=[Conflict.Kind.OVERSELL, Conflict.Kind.DUPLICATE_ORDER],
        updated_at__gte=facts.created_at - CLOCK_SKEW,
    ).filter(
        Q(reference__in=[ref for ref in facts.references if ref])
        | Q(kind=Conflict.Kind.OVERSELL, product_id__in=facts.product_ids)
    )


def order_conflicts(*, order_id: int) -> QuerySet[Conflict]:
    """The conflicts naming an order (`conflicts_naming_order`); none for an unknown order."""
    facts = order_facts(order_id)
    if facts is None:
        return Conflict.objects.none()
    return conflicts_naming_order(facts)


def order_conflict_counts(*, order_id: int) -> tuple[int, int]:
    """How many conflicts name the order, and how many of them are open (one query more)."""
    counts = order_conflicts(order_id=order_id).aggregate(
        total=Count("pk"), open=Count("pk", filter=Q(status=Conflict.Status.OPEN))
    )
    return counts["total"], counts["open"]


def _names_order(details, order_id: int) -> bool:
    orders = details.get("orders") if isinstance(details, dict) else None
    return isinstance(orders, list) and order_id in orders


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
