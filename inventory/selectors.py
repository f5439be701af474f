"""Inventory reads."""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce

from inventory.errors import (
    ProductNotFound,
    ReservationNotFound,
    VendorNotFound,
    WarehouseNotFound,
)
from inventory.hooks import stock_sources
from inventory.models import (
    ZERO,
    Product,
    Reservation,
    StockLevel,
    StockMovement,
    Vendor,
    Warehouse,
)


def vendor_default() -> Vendor:
    vendor = Vendor.objects.filter(is_default=True).first()
    if vendor is None:
        raise VendorNotFound("No default vendor is configured.")
    return vendor


def vendor_stock_source(vendor_id: uuid.UUID | str) -> str:
    """Why an outside system sets the vendor's physical stock ("an ERP agent"), or "".

    Such a vendor's stock is corrected back to the outside figures (the ERP wins), so a
    local adjustment would not last: ask the registered readers (`inventory.hooks`).
    """
    for reader in stock_sources():
        reason = reader(vendor_id)
        if reason:
            return reason
    return ""


def vendor_get(vendor_id: str | uuid.UUID | None) -> Vendor:
    """The vendor with this id, or the default vendor when none is given."""
    if vendor_id in (None, ""):
        return vendor_default()
    try:
        return Vendor.objects.get(pk=uuid.UUID(str(vendor_id)))
    except (ValueError, Vendor.DoesNotExist) as exc:
        raise VendorNotFound(f"No vendor with id {vendor_id}.") from exc


def _vendor_filter(vendor_id: str | uuid.UUID | None) -> dict:
    if vendor_id in (None, ""):
        return {"vendor__is_default": True}
    try:
        return {"vendor_id": uuid.UUID(str(vendor_id))}
    except ValueError as exc:
        raise VendorNotFound(f"No vendor with id {vendor_id}.") from exc


def _level_vendor_filter(vendor_id: str | uuid.UUID | None) -> dict:
    return {f"product__{key}": value for key, value in _vendor_filter(vendor_id).items()}


def product_get(*, sku: str, vendor_id: str | uuid.UUID | None = None) -> Product:
    """The product with this SKU at the vendor (default vendor when none is given)."""
    product = Product.objects.filter(sku=sku, **_vendor_filter(vendor_id)).first()
    if product is None:
        _product_missing(sku, vendor_id)
    return product


def _product_missing(sku: str, vendor_id: str | uuid.UUID | None) -> None:
    vendor_get(vendor_id)  # an unknown vendor is the better answer
    raise ProductNotFound(f"No product with SKU {sku}.", details={"sku": sku})


def stock_level_find(
    *, sku: str, warehouse_code: str, vendor_id: str | uuid.UUID | None = None
) -> StockLevel | None:
    """The level of a SKU in a warehouse, with its product and warehouse (one query)."""
    vendor_filter = _level_vendor_filter(vendor_id)
    levels = list(
        StockLevel.objects.select_related("product", "warehouse")
        .filter(product__sku=sku, warehouse__code=warehouse_code, **vendor_filter)
        .order_by()[:1]
    )
    return levels[0] if levels else None


def warehouse_get(*, code: str, vendor_id: uuid.UUID) -> Warehouse:
    warehouse = Warehouse.objects.filter(vendor_id=vendor_id, code=code).first()
    if warehouse is None:
        raise WarehouseNotFound(f"No warehouse {code}.", details={"warehouse": code})
    return warehouse


def vendor_default_warehouse(vendor: Vendor | uuid.UUID) -> Warehouse:
    """The vendor's default warehouse (used when a reservation names none), or 404."""
    vendor_id = vendor.pk if isinstance(vendor, Vendor) else vendor
    warehouse = Warehouse.objects.filter(vendor_id=vendor_id, is_default=True).first()
    if warehouse is None:
        raise WarehouseNotFound(
            "The vendor has no default warehouse; name one.", details={"warehouse": None}
        )
    return warehouse


def product_list() -> QuerySet[Product]:
    return Product.objects.select_related("vendor")


def warehouse_list() -> QuerySet[Warehouse]:
    return Warehouse.objects.all()


def stock_level_list() -> QuerySet[StockLevel]:
    return StockLevel.objects.select_related("product", "warehouse").annotate(
        available_quantity=F("on_hand") - F("reserved")
    )


@dataclass(frozen=True)
class StockSummary:
    product: Product
    on_hand: Decimal
    reserved: Decimal
    available: Decimal
    ordered_quantity: Decimal
    levels: list[StockLevel]


def stock_summary(*, sku: str, vendor_id: str | uuid.UUID | None = None) -> StockSummary:
    """A product's stock: totals across warehouses and one row per warehouse.

    One query when the product has stock levels (the product comes joined to them).
    """
    vendor_filter = _level_vendor_filter(vendor_id)
    levels = list(
        StockLevel.objects.filter(product__sku=sku, **vendor_filter)
        .select_related("product", "warehouse")
        .order_by("warehouse__code")
    )
    product = levels[0].product if levels else product_get(sku=sku, vendor_id=vendor_id)
    for level in levels:
        level.product = product
    on_hand = sum((level.on_hand for level in levels), ZERO)
    reserved = sum((level.reserved for level in levels), ZERO)
    return StockSummary(
        product=product,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        ordered_quantity=sum((level.ordered_quantity for level in levels), ZERO),
        levels=levels,
    )


def movement_list() -> QuerySet[StockMovement]:
    return StockMovement.objects.select_related("level__product", "level__warehouse")


def reservation_list() -> QuerySet[Reservation]:
    return Reservation.objects.select_related("level__product", "level__warehouse")


def reservation_get(*, reservation_id: int) -> Reservation:
    reservation = reservation_list().filter(pk=reservation_id).first()
    if reservation is None:
        raise ReservationNotFound(details={"id": reservation_id})
    return reservation


@dataclass(frozen=True)
class LedgerMismatch:
    level_id: int
    sku: str
    warehouse: str
    on_hand: Decimal
    on_hand_from_ledger: Decimal
    reserved: Decimal
    reserved_from_ledger: Decimal


def ledger_mismatches() -> list[LedgerMismatch]:
    """Levels whose quantities differ from the sum of their movements (one query)."""
    rows = (
        StockLevel.objects.annotate(
            ledger_on_hand=Coalesce(Sum("movements__on_hand_delta"), ZERO),
            ledger_reserved=Coalesce(Sum("movements__reserved_delta"), ZERO),
        )
        .exclude(on_hand=F("ledger_on_hand"), reserved=F("ledger_reserved"))
        .values_list(
            "pk",
            "product__sku",
            "warehouse__code",
            "on_hand",
            "ledger_on_hand",
            "reserved",
            "ledger_reserved",
        )
        .order_by("pk")
    )
    return [LedgerMismatch(*row) for row in rows]


def stock_levels_below_min_count() -> int:
    return (
        StockLevel.objects.filter(min_stock__isnull=False)
        .filter(min_stock__gt=F("on_hand") - F("reserved"))
        .count()
    )


def reservations_active_count() -> int:
    return Reservation.objects.filter(status=Reservation.Status.ACTIVE).count()
