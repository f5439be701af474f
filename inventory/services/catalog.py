"""Catalogue writes: products and warehouses."""

import uuid
from decimal import Decimal
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ConflictError
from inventory.errors import WarehouseInactive
from inventory.locks import vendors_lock
from inventory.models import Product, Vendor, Warehouse

logger = structlog.get_logger(__name__)

PRODUCT_FIELDS = {
    "name",
    "erp_id",
    "barcode",
    "variant_group",
    "attributes",
    "unit_code",
    "vat_code",
    "family",
    "subfamily",
    "price_excl_vat",
    "price_incl_vat",
    "manage_stock",
    "allow_negative_stock",
    "is_discontinued",
}


def _derive_vat(product: Product) -> None:
    if product.price_excl_vat is not None and product.price_incl_vat is not None:
        product.vat_amount = Decimal(product.price_incl_vat) - Decimal(product.price_excl_vat)
    else:
        product.vat_amount = None


def _apply_discontinued(product: Product, discontinued: bool) -> None:
    if discontinued and not product.is_discontinued:
        product.discontinued_at = timezone.now()
    elif not discontinued:
        product.discontinued_at = None
    product.is_discontinued = discontinued


def product_create(*, vendor: Vendor, sku: str, name: str, **fields: Any) -> Product:
    """Create a product; refuses a SKU the vendor already has (`sku_exists`)."""
    unknown = set(fields) - PRODUCT_FIELDS
    if unknown:
        raise TypeError(f"unknown product fields: {sorted(unknown)}")
    discontinued = bool(fields.pop("is_discontinued", False))
    product = Product(vendor=vendor, sku=sku, name=name, **fields)
    _apply_discontinued(product, discontinued)
    _derive_vat(product)
    try:
        with transaction.atomic():
            product.save()
    except IntegrityError as exc:
        raise ConflictError(f"SKU {sku} already exists.", code="sku_exists") from exc
    logger.info("product.created", sku=sku, vendor_id=str(vendor.pk))
    return product


def product_update(*, product: Product, **fields: Any) -> Product:
    """Change a product's catalogue fields (the VAT amount follows the prices)."""
    unknown = set(fields) - PRODUCT_FIELDS
    if unknown:
        raise TypeError(f"unknown product fields: {sorted(unknown)}")
    if "is_discontinued" in fields:
        _apply_discontinued(product, bool(fields.pop("is_discontinued")))
    for name, value in fields.items():
        setattr(product, name, value)
    _derive_vat(product)
    product.save()
    logger.info("product.updated", sku=product.sku, fields=sorted(fields))
    return product


def warehouse_create(
    *,
    vendor: Vendor,
    code: str,
    name: str,
    erp_id: str = "",
    is_default: bool = False,
    is_main: bool = False,
    type: str = Warehouse.Type.STORAGE,
    active: bool = True,
) -> Warehouse:
    """Create a warehouse; a new default warehouse takes over from the previous one.

    The vendor's first (active) warehouse becomes its default whatever `is_default` says:
    reservations and pulled rows that name no warehouse need one. Takes the vendor lock, so
    two concurrent first warehouses give exactly one default.
    """
    warehouse_default_check(is_default=is_default, active=active, code=code)
    try:
        with transaction.atomic():
            vendors_lock([vendor.pk])
            if is_default:
                Warehouse.objects.filter(vendor=vendor, is_default=True).update(is_default=False)
            warehouse = Warehouse.objects.create(
                vendor=vendor,
                code=code,
                name=name,
                erp_id=erp_id,
                is_default=is_default,
                is_main=is_main,
                type=type,
                active=active,
            )
            default = warehouse_default_ensure(vendor_id=vendor.pk)
            warehouse.is_default = default is not None and default.pk == warehouse.pk
    except IntegrityError as exc:
        raise ConflictError(f"Warehouse {code} already exists.", code="warehouse_exists") from exc
    logger.info("warehouse.created", code=code, vendor_id=str(vendor.pk))
    return warehouse


WAREHOUSE_FIELDS = {"name", "erp_id", "is_default", "is_main", "type", "active"}


def warehouse_update(*, warehouse: Warehouse, **fields: Any) -> Warehouse:
    """Change a warehouse's fields under the vendor lock.

    `is_default=True` moves the vendor's default here (`warehouse_default_set`); a vendor
    left without a default (its default unset) gets its first active warehouse again.
    """
    unknown = set(fields) - WAREHOUSE_FIELDS
    if unknown:
        raise TypeError(f"unknown warehouse fields: {sorted(unknown)}")
    make_default = fields.pop("is_default", None)
    with transaction.atomic():
        vendors_lock([warehouse.vendor_id])
        for name, value in fields.items():
            setattr(warehouse, name, value)
        warehouse.save(update_fields=[*fields, "updated_at"])
        if make_default:
            warehouse_default_set(warehouse=warehouse)
        elif make_default is False:
            Warehouse.objects.filter(pk=warehouse.pk).update(is_default=False)
        default = warehouse_default_ensure(vendor_id=warehouse.vendor_id)
        warehouse.is_default = default is not None and default.pk == warehouse.pk
    logger.info("warehouse.updated", code=warehouse.code, fields=sorted(fields))
    return warehouse


def warehouse_default_check(*, is_default: bool, active: bool, code: str = "") -> None:
    """Refuse an inactive default warehouse (`warehouse_inactive`, field `is_default`):
    reservations and pulled rows that name no warehouse go to the default."""
    if is_default and not active:
        raise WarehouseInactive(
            f"Warehouse {code} is inactive and cannot be the default."
            if code
            else "An inactive warehouse cannot be the default.",
            details={"warehouse": code, "field": "is_default"},
        )


def warehouse_default_set(*, warehouse: Warehouse) -> Warehouse:
    """Make this warehouse its vendor's default (the previous default stops being one).

    Takes the vendor lock. Refuses an inactive warehouse (`warehouse_inactive`). Idempotent.
    """
    with transaction.atomic():
        vendors_lock([warehouse.vendor_id])
        warehouse.refresh_from_db(fields=["active", "is_default"])
        warehouse_default_check(is_default=True, active=warehouse.active, code=warehouse.code)
        if warehouse.is_default:
            return warehouse
        now = timezone.now()
        previous = list(
            Warehouse.objects.filter(vendor_id=warehouse.vendor_id, is_default=True).values_list(
                "code", flat=True
            )
        )
        # The partial unique constraint allows one default per vendor: clear the old first.
        Warehouse.objects.filter(vendor_id=warehouse.vendor_id, is_default=True).update(
            is_default=False, updated_at=now
        )
        Warehouse.objects.filter(pk=warehouse.pk).update(is_default=True, updated_at=now)
    warehouse.is_default, warehouse.updated_at = True, now
    logger.info(
        "warehouse.default_changed",
        vendor_id=str(warehouse.vendor_id),
        old=previous[0] if previous else None,
        new=warehouse.code,
    )
    return warehouse


def warehouse_default_ensure(*, vendor_id: uuid.UUID) -> Warehouse | None:
    """Give the vendor a default warehouse when it has none: its first active one.

    A default that was deactivated stops being the default (and the first active warehouse
    takes over): an inactive warehouse takes no reservations. Returns the vendor's default
    (None when it has no active warehouse). Must run inside a
    transaction that holds the vendor lock (`inventory.locks.vendors_lock`): every path that
    creates or changes warehouses (API, admin, ERP ingest) calls it there, so concurrent
    writers cannot both pick a default.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("warehouse_default_ensure must run inside transaction.atomic()")
    current = Warehouse.objects.filter(vendor_id=vendor_id, is_default=True).first()
    if current is not None and current.active:
        return current
    if current is not None:
        Warehouse.objects.filter(pk=current.pk).update(is_default=False, updated_at=timezone.now())
    first = (
        Warehouse.objects.filter(vendor_id=vendor_id, active=True)
        .order_by("created_at", "pk")
        .first()
    )
    if first is None:
        return None
    first.is_default = True
    first.updated_at = timezone.now()
    Warehouse.objects.filter(pk=first.pk).update(is_default=True, updated_at=first.updated_at)
    logger.info("warehouse.default_chosen", vendor_id=str(vendor_id), code=first.code)
    return first


def products_bulk_create(*, vendor: Vendor, rows: list[dict[str, Any]]) -> int:
    """Create many products in one statement, skipping SKUs the vendor has; return how many
    were new. Each row holds `sku`, `name` and any catalogue fields."""
    before = Product.objects.filter(vendor=vendor).count()
    products = []
    for row in rows:
        product = Product(vendor=vendor, **row)
        _derive_vat(product)
        products.append(product)
    Product.objects.bulk_create(products, batch_size=1000, ignore_conflicts=True)
    created = Product.objects.filter(vendor=vendor).count() - before
    logger.info("products.bulk_created", vendor_id=str(vendor.pk), created=created)
    return created
