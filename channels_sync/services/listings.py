"""Listings: tie products to a channel's marketplace keys (batches), retry a dead one."""

from dataclasses import dataclass, field
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.hooks import listings_created
from channels_sync.models import Channel, ChannelListing
from channels_sync.services.dirty import listings_mark_dirty
from core.batch import row_result
from inventory.models import Product

logger = structlog.get_logger(__name__)

MAX_LISTING_ROWS = 1000
# The columns of the unique marketplace identity of a listing (the seller SKU is a label).
IDENTITY_COLUMNS = ("external_item_id", "external_variant_id", "external_location_id")


@dataclass
class ListingRowResult:
    """What happened to one row of a listing batch."""

    index: int
    sku: str
    status: str  # created, updated, unchanged, invalid
    listing_id: int | None = None
    code: str = ""
    message: str = ""
    field: str = ""

    def as_dict(self) -> dict:
        extra: dict[str, Any] = {"sku": self.sku}
        if self.listing_id is not None:
            extra["listing_id"] = self.listing_id
        return row_result(
            self.index,
            self.status,
            code=self.code,
            message=self.message,
            field=self.field,
            **extra,
        )


@dataclass
class ListingBatchResult:
    rows: list[ListingRowResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts


@transaction.atomic
def listings_upsert(
    *, channel: Channel, rows: list[dict[str, Any]], actor: str
) -> ListingBatchResult:
    """Create or update listings from `{"sku", "keys"}` rows; one result per row.

    A row is `invalid` (with a code: `unknown_sku`, `invalid_keys`, `duplicate`,
    `keys_taken`) without stopping the others. A new listing, or one whose keys changed,
    is marked dirty and the channel pushed after commit; both are told to the
    `channels_sync.hooks` listeners in this transaction (new keys may match parked orders).
    Locks the channel's listings of the batch's products (pk order) so two batches of the
    same rows do not race.
    """
    cls = adapter_class(channel.type)
    result = ListingBatchResult()
    cleaned: list[tuple[int, str, dict[str, str]]] = []
    seen_skus: dict[str, int] = {}
    seen_keys: dict[tuple, int] = {}
    for index, row in enumerate(rows):
        sku = str(row.get("sku") or "").strip() if isinstance(row, dict) else ""
        outcome = ListingRowResult(index=index, sku=sku, status="invalid")
        result.rows.append(outcome)
        if not sku:
            outcome.code, outcome.message = "invalid_row", "sku is required"
            outcome.field = "sku"
            continue
        try:
            keys = cls.keys_clean(row.get("keys"))
        except ValueError as exc:
            outcome.code, outcome.message = "invalid_keys", str(exc)
            outcome.field = "keys"
            continue
        columns = cls.keys_to_columns(keys)
        key_tuple = tuple(columns[c] for c in IDENTITY_COLUMNS)
        if sku in seen_skus or key_tuple in seen_keys:
            first = seen_skus.get(sku, seen_keys.get(key_tuple))
            outcome.code = "duplicate"
            outcome.message = f"the same SKU or keys as row {first}"
            continue
        seen_skus[sku] = index
        seen_keys[key_tuple] = index
        cleaned.append((index, sku, columns))
    products = {
        p.sku: p
        for p in Product.objects.filter(
            vendor_id=channel.vendor_id, sku__in=[sku for _, sku, _ in cleaned]
        )
    }
    existing = {
        listing.product_id: listing
        for listing in ChannelListing.objects.select_for_update()
        .filter(channel=channel, product__in=list(products.values()))
        .order_by("pk")
    }
    # Which product holds each set of keys already (one query for the whole batch).
    holders: dict[tuple, int] = {}
    wanted = {tuple(columns[c] for c in IDENTITY_COLUMNS) for _, _, columns in cleaned}
    if wanted:
        items = {key[0] for key in wanted}
        for row in ChannelListing.objects.filter(
            channel=channel, external_item_id__in=items
        ).values(*IDENTITY_COLUMNS, "product_id"):
            holders[tuple(row[c] for c in IDENTITY_COLUMNS)] = row["product_id"]
    marked: list[int] = []
    created: list[ChannelListing] = []
    for index, sku, columns in cleaned:
        outcome = result.rows[index]
        product = products.get(sku)
        if product is None:
            outcome.code, outcome.message = "unknown_sku", f"no product {sku!r}"
            outcome.field = "sku"
            continue
        listing = existing.get(product.pk)
        holder = holders.get(tuple(columns[c] for c in IDENTITY_COLUMNS))
        if holder is not None and holder != product.pk:
            outcome.code, outcome.field = "keys_taken", "keys"
            outcome.message = "another product of this channel has these keys"
            continue
        try:
            # A concurrent batch may take the same keys first: that row alone is refused.
            with transaction.atomic():
                if listing is None:
                    listing = ChannelListing.objects.create(
                        channel=channel,
                        product=product,
                        dirty=True,
                        dirty_since=timezone.now(),
                        **columns,
                    )
                    outcome.status = "created"
                    created.append(listing)
                elif any(getattr(listing, name) != value for name, value in columns.items()):
                    for name, value in columns.items():
                        setattr(listing, name, value)
                    # New keys: the marketplace entry behind them has never been pushed,
                    # and what it shows is not known.
                    listing.last_pushed_quantity = None
                    listing.channel_quantity = None
                    listing.save()
                    outcome.status = "updated"
                    created.append(listing)
        except IntegrityError:
            outcome.code, outcome.field = "keys_taken", "keys"
            outcome.message = "another listing of this channel took these keys meanwhile"
            continue
        if outcome.status in ("created", "updated"):
            marked.append(listing.pk)
        else:
            outcome.status = "unchanged"
        outcome.listing_id = listing.pk
    if marked:
        # Shared-pool rules split a product between its channels: a new or changed listing
        # can move the others' shares too.
        listings_mark_dirty(listing_ids=_sharing(marked))
    listings_created(created)
    logger.info("listings.upserted", channel_id=channel.pk, actor=actor, **result.counts())
    return result


@transaction.atomic
def listing_push_retry(*, listing_id: int) -> bool:
    """Give a failed listing a fresh start (status ok, no failures) and push it.

    The dead-letter console's retry runs this. Returns False if the listing is gone.
    """
    updated = ChannelListing.objects.filter(pk=listing_id).update(
        status=ChannelListing.Status.OK,
        push_failures=0,
        next_push_at=None,
        last_error="",
        updated_at=timezone.now(),
    )
    if not updated:
        return False
    listings_mark_dirty(listing_ids=[listing_id])
    return True


@transaction.atomic
def listing_set_excluded(*, listing: ChannelListing, excluded: bool, actor: str) -> ChannelListing:
    """Stop (or resume) pushing one listing."""
    listing.status = ChannelListing.Status.EXCLUDED if excluded else ChannelListing.Status.OK
    listing.save(update_fields=["status", "updated_at"])
    listings_mark_dirty(listing_ids=_sharing([listing.pk]))
    logger.info("listing.excluded", listing_id=listing.pk, excluded=excluded, actor=actor)
    return listing


def _sharing(listing_ids: list[int]) -> list[int]:
    """The listings of every channel that list the same products as these."""
    products = ChannelListing.objects.filter(pk__in=listing_ids).values("product_id")
    return list(ChannelListing.objects.filter(product_id__in=products).values_list("pk", flat=True))
