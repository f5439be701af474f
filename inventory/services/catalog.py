"""Catalogue writes: products and warehouses."""

from decimal import Decimal
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ConflictError
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
    """Create a warehouse; a new default warehouse takes over from the previous one."""
    try:
        with transaction.atomic():
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
    except IntegrityError as exc:
        raise ConflictError(f"Warehouse {code} already exists.", code="warehouse_exists") from exc
    logger.info("warehouse.created", code=code, vendor_id=str(vendor.pk))
    return warehouse


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
