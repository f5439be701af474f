"""Vendors, warehouses, products, stock levels, the movement ledger, reservations.

Quantities are Decimal(14, 3): ERP units include kilograms and litres.
`available = on_hand - reserved`. Every change to `on_hand` or `reserved` is written through
`inventory.services`, which records a `StockMovement` in the same transaction; the sum of a
level's movements equals its quantities (`manage.py check_ledger` proves it).
"""

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.models import BaseModel

QUANTITY = {"max_digits": 14, "decimal_places": 3}
MONEY = {"max_digits": 14, "decimal_places": 4}
ZERO = Decimal("0")


class Vendor(BaseModel):
    """A merchant whose ERP feeds SyncStore (an ERP tenant); one is the default."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="uniq_default_vendor"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Warehouse(BaseModel):
    """A place that holds stock for one vendor."""

    class Type(models.TextChoices):
        STORAGE = "storage", "storage"
        TRANSIT = "transit", "transit"

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="warehouses")
    code = models.CharField(max_length=50)
    name = models.CharField(max_length=200)
    erp_id = models.CharField(max_length=100, blank=True)
    is_default = models.BooleanField(
        default=False, help_text="Used when a request names no warehouse."
    )
    is_main = models.BooleanField(default=False)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.STORAGE)
    active = models.BooleanField(default=True)
    content_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the ERP content last applied."
    )
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The ERP's timestamp of the content last applied."
    )

    class Meta:
        ordering = ["vendor_id", "code"]
        constraints = [
            models.UniqueConstraint(fields=["vendor", "code"], name="uniq_warehouse_vendor_code"),
            models.UniqueConstraint(
                fields=["vendor"],
                condition=Q(is_default=True),
                name="uniq_default_warehouse_per_vendor",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Product(BaseModel):
    """One sellable SKU of a vendor; variants share a `variant_group`."""

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="products")
    sku = models.CharField(max_length=100)
    name = models.CharField(max_length=300)
    erp_id = models.CharField(max_length=100, blank=True)
    barcode = models.CharField(max_length=64, blank=True)
    variant_group = models.CharField(
        max_length=100, blank=True, help_text="SKUs with the same value are variants of one item."
    )
    attributes = models.JSONField(
        default=dict, blank=True, help_text='Variant attributes, e.g. {"size": "M"}.'
    )
    # Internal codes from the vendor's ERP code mappings (as long as a mapping's code).
    unit_code = models.CharField(max_length=100, blank=True)
    vat_code = models.CharField(max_length=100, blank=True)
    family = models.CharField(max_length=100, blank=True)
    subfamily = models.CharField(max_length=100, blank=True)
    price_excl_vat = models.DecimalField(**MONEY, null=True, blank=True)
    price_incl_vat = models.DecimalField(**MONEY, null=True, blank=True)
    vat_amount = models.DecimalField(**MONEY, null=True, blank=True)
    manage_stock = models.BooleanField(
        default=True, help_text="Off: quantities are recorded but never refused."
    )
    allow_negative_stock = models.BooleanField(default=False)
    is_discontinued = models.BooleanField(default=False)
    discontinued_at = models.DateTimeField(null=True, blank=True)
    content_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the ERP content last applied."
    )
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The ERP's timestamp of the content last applied."
    )

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(fields=["vendor", "sku"], name="uniq_product_vendor_sku"),
        ]
        indexes = [
            models.Index(fields=["vendor", "variant_group"], name="product_variant_group_idx"),
            models.Index(fields=["barcode"], name="product_barcode_idx"),
            models.Index(fields=["sku"], name="product_sku_idx"),
        ]

    def __str__(self) -> str:
        return self.sku

    @property
    def stock_is_enforced(self) -> bool:
        """Whether refusing to go below zero applies to this product."""
        return self.manage_stock and not self.allow_negative_stock


class StockLevel(BaseModel):
    """The quantities of one product in one warehouse."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_levels")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.PROTECT, related_name="stock_levels")
    on_hand = models.DecimalField(**QUANTITY, default=ZERO)
    reserved = models.DecimalField(**QUANTITY, default=ZERO)
    ordered_quantity = models.DecimalField(
        **QUANTITY, default=ZERO, help_text="On order from suppliers (from the ERP)."
    )
    unit_cost = models.DecimalField(**MONEY, default=ZERO, help_text="Weighted average cost.")
    stock_value = models.DecimalField(max_digits=18, decimal_places=4, default=ZERO)
    min_stock = models.DecimalField(
        **QUANTITY, null=True, blank=True, help_text="Alert when available falls below."
    )
    max_stock = models.DecimalField(**QUANTITY, null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    content_hash = models.CharField(
        max_length=64, blank=True, help_text="Hash of the ERP content last applied."
    )
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The ERP's timestamp of the content last applied."
    )

    class Meta:
        ordering = ["product_id", "warehouse_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "warehouse"], name="uniq_stock_level_product_warehouse"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_level_reserved_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["warehouse"], name="stock_level_warehouse_idx")]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.warehouse_id}"

    @property
    def available(self) -> Decimal:
        return self.on_hand - self.reserved


class Reservation(BaseModel):
    """Stock held for an order line until it ships (commit), is released, or expires."""

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        COMMITTED = "committed", "committed"
        RELEASED = "released", "released"
        EXPIRED = "expired", "expired"

    level = models.ForeignKey(StockLevel, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.DecimalField(**QUANTITY)
    reference = models.CharField(max_length=200, blank=True, help_text="e.g. the order line.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=300, blank=True)
    owner = models.CharField(
        max_length=32,
        blank=True,
        help_text="What holds the stock (`order_line`: an order's line). An owned reservation "
        "is released or committed only by its owner, never through the API or the console.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="uniq_reservation_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_quantity_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="reservation_due_idx"),
            models.Index(fields=["reference"], name="reservation_reference_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} for {self.reference or self.pk} ({self.status})"


class StockMovement(models.Model):
    """One line of the append-only ledger: a change to a level's on_hand and/or reserved."""

    class Kind(models.TextChoices):
        ADJUST = "adjust", "adjustment"
        COUNT = "count", "count (set)"
        TRANSFER_OUT = "transfer_out", "transfer out"
        TRANSFER_IN = "transfer_in", "transfer in"
        RESERVE = "reserve", "reservation"
        RELEASE = "release", "release"
        COMMIT = "commit", "commit (shipped)"
        EXPIRE = "expire", "reservation expired"
        ERP_SYNC = "erp_sync", "ERP sync"
        RECONCILIATION = "reconciliation", "reconciliation"

    level = models.ForeignKey(StockLevel, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    on_hand_delta = models.DecimalField(**QUANTITY, default=ZERO)
    reserved_delta = models.DecimalField(**QUANTITY, default=ZERO)
    on_hand_after = models.DecimalField(**QUANTITY)
    reserved_after = models.DecimalField(**QUANTITY)
    unit_cost = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Cost of the units received, if given."
    )
    source = models.CharField(max_length=32, help_text="api, admin, system, erp, channel, ...")
    reference = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150)
    correlation_id = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=300, blank=True)
    reservation = models.ForeignKey(
        Reservation, on_delete=models.PROTECT, null=True, blank=True, related_name="movements"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key", "level"],
                condition=~Q(idempotency_key=""),
                name="uniq_movement_idempotency_key_level",
            ),
        ]
        indexes = [
            models.Index(fields=["level", "-id"], name="movement_level_idx"),
            models.Index(fields=["kind", "-id"], name="movement_kind_idx"),
            models.Index(fields=["created_at"], name="movement_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.on_hand_delta:+}/{self.reserved_delta:+} on {self.level_id}"

    def save(self, *args, **kwargs) -> None:
        # The ledger is append-only: a movement, once written, is never rewritten.
        if self.pk is not None and not self._state.adding:
            raise ValueError("stock movements are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("stock movements are append-only")
