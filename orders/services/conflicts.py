"""Conflicts the orders find: a line sold past zero, and one marketplace order id seen on two
of a vendor's channels. Both are opened inside the order's transaction and never fail it.
"""

import hashlib

import structlog
from django.db import connection, transaction

from channels_sync.models import Channel, ChannelListing, Conflict
from channels_sync.services.conflicts import conflict_open
from orders.models import Order, OrderLine

logger = structlog.get_logger(__name__)


def oversell_conflict_open(*, order: Order, line: OrderLine, available) -> None:
    """Open (or update) the `oversell` conflict of a line reserved past zero.

    The conflict is about the order's channel listing of the product (none: about the
    order's marketplace id): ours is the level's available quantity after the sale
    (negative), theirs the units sold past zero. The details name the orders and the
    warehouses their stock came from (`orders`, `warehouse_ids`: joined while the conflict
    stays open), and the latest line, its SKU and warehouse.
    """
    listing = None
    if order.channel_id is not None:
        listing = (
            ChannelListing.objects.filter(channel_id=order.channel_id, product_id=line.product_id)
            .order_by("pk")
            .first()
        )
    details = {
        "orders": [order.pk],
        "order_number": order.order_number,
        "line": line.line_number,
        "sku": line.product.sku,
        "warehouse_id": line.warehouse_id,
        "warehouse_ids": [line.warehouse_id],
        "warehouse": line.warehouse.code,
    }
    _open_quietly(
        kind=Conflict.Kind.OVERSELL,
        vendor=order.vendor,
        channel=order.channel,
        listing=listing,
        product=line.product,
        reference=order.external_id or order.order_number,
        source=Conflict.Source.ORDER,
        ours=available,
        theirs=-available,
        details=details,
    )


def duplicate_order_conflict_open(*, order: Order) -> None:
    """Open a `duplicate_order` conflict if the vendor's other channels have this order's id.

    Called on a marketplace order's first sighting, after its insert. A transaction lock on
    (vendor, external id) makes two first sightings on two channels at once see each other:
    the second to take it runs its check after the first has committed.
    """
    if order.channel_id is None or not order.external_id:
        return
    _external_id_lock(order.vendor_id, order.external_id)
    channel_ids = list(
        Channel.objects.filter(vendor_id=order.vendor_id)
        .exclude(pk=order.channel_id)
        .values_list("pk", flat=True)
    )
    # By (channel, external id): the index of the orders' unique constraint.
    others = list(
        Order.objects.filter(channel_id__in=channel_ids, external_id=order.external_id)
        .order_by("pk")
        .values_list("pk", "channel_id")
    )
    if not others:
        return
    channels = dict.fromkeys(channel_id for _, channel_id in others)
    details = {
        "orders": [*(pk for pk, _ in others), order.pk],
        "channels": [*channels, order.channel_id],
    }
    _open_quietly(
        kind=Conflict.Kind.DUPLICATE_ORDER,
        vendor=order.vendor,
        channel=order.channel,
        reference=order.external_id,
        source=Conflict.Source.ORDER,
        ours=None,
        theirs=None,
        details=details,
    )


def _external_id_lock(vendor_id, external_id: str) -> None:
    """Serialize first sightings of one marketplace order id within a vendor (PostgreSQL;
    SQLite runs one writing transaction at a time anyway). Held until the transaction ends."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(
        f"order_external_id:{vendor_id}:{external_id}".encode(), digest_size=8
    ).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)]
        )


def _open_quietly(**arguments) -> None:
    """`conflict_open` in a savepoint: a failure is logged and the order goes on."""
    try:
        with transaction.atomic():
            conflict_open(**arguments)
    except Exception:
        logger.exception(
            "order.conflict_open_failed",
            kind=arguments["kind"],
            reference=arguments.get("reference", ""),
        )
