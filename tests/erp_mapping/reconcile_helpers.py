"""Shared set-up of the reconciliation tests: an ERP agent served over HTTP, bulk stock."""

from collections.abc import Iterable
from decimal import Decimal

from erp_mapping.agent_server import AgentServer
from inventory.models import Product, StockLevel, Vendor, Warehouse
from inventory.services import Origin
from inventory.services.bulk import LevelTarget, stock_levels_sync

SECRET = "reconcile-test-secret"
ORIGIN = Origin(source="test", actor="test")


def catalogue(vendor: Vendor, skus: Iterable[str]) -> dict[str, Product]:
    """Create products (one query) and return them by SKU."""
    Product.objects.bulk_create(
        [Product(vendor=vendor, sku=sku, name=sku) for sku in skus], ignore_conflicts=True
    )
    return {p.sku: p for p in Product.objects.filter(vendor=vendor)}


def stock(rows: Iterable[tuple[Product, Warehouse, Decimal | int | str]]) -> None:
    """Set levels set-based (with their ledger movements)."""
    stock_levels_sync(
        targets=[
            LevelTarget(product.pk, warehouse.pk, Decimal(str(quantity)))
            for product, warehouse, quantity in rows
        ],
        origin=ORIGIN,
    )


def erp_from_local(app: AgentServer, vendor: Vendor) -> int:
    """Load the ERP with exactly the vendor's local stock."""
    return app.stock_load(
        (sku, code, on_hand)
        for sku, code, on_hand in StockLevel.objects.filter(product__vendor=vendor).values_list(
            "product__sku", "warehouse__code", "on_hand"
        )
    )


def on_hand(vendor: Vendor, sku: str, code: str) -> Decimal:
    level = StockLevel.objects.filter(
        product__vendor=vendor, product__sku=sku, warehouse__code=code
    ).first()
    return level.on_hand if level else Decimal(0)
