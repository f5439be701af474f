"""Orders from the marketplaces (and the API), their lines, and the record of every change.

An order's `status` is normalized (`channels_sync.adapters.OrderStatus`); the marketplace's
own status is kept in `raw_status`. Each line holds stock through one reservation whose
life follows the order: open -> reserved, shipped -> committed, cancelled -> released.
Only `orders.services` writes these tables; every change writes an `OrderEvent` in the same
transaction.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from channels_sync.adapters.base import OrderStatus
from channels_sync.models import Channel
from core.models import BaseModel
from inventory.models import MONEY, QUANTITY, Product, Reservation, Vendor, Warehouse


class Order(BaseModel):
    """One sale: a marketplace order (with its channel) or one entered through the API."""

    Status = models.TextChoices(
        "Status", [(s.value, s.value.replace("_", " ")) for s in OrderStatus]
    )

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="orders")
    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, null=True, blank=True, related_name="orders"
    )
    external_id = models.CharField(
        max_length=100, blank=True, help_text="The marketplace's order id."
    )
    order_number = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=Status.choices)
    raw_status = models.CharField(
        max_length=100, blank=True, help_text="The marketplace's own status, as last seen."
    )
    needs_mapping = models.BooleanField(
        default=False, help_text="A line matches no listing or product yet."
    )
    placed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    source_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="The marketplace's update time of the state applied."
    )
    confirmed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the order was first confirmed (paid)."
    )
    customer = models.JSONField(default=dict, blank=True)
    address = models.JSONField(default=dict, blank=True)
    amount = models.DecimalField(**MONEY, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    payment_method = models.CharField(max_length=100, blank=True)
    erp_reference = models.CharField(max_length=100, blank=True)
    erp_status = models.CharField(max_length=32, blank=True)
    erp_document_id = models.CharField(max_length=100, blank=True)
    erp_synced_at = models.DateTimeField(null=True, blank=True)
    erp_sync_error = models.CharField(max_length=1000, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"],
                condition=Q(channel__isnull=False),
                name="uniq_order_channel_external_id",
            ),
            models.UniqueConstraint(
                fields=["vendor", "order_number"], name="uniq_order_vendor_number"
            ),
        ]
        indexes = [
            models.Index(fields=["status"], name="order_status_idx"),
            models.Index(
                fields=["channel"], condition=Q(needs_mapping=True), name="order_parked_idx"
            ),
            models.Index(fields=["placed_at"], name="order_placed_idx"),
        ]

    def __str__(self) -> str:
        return self.order_number


class OrderLine(BaseModel):
    """One product of an order, as the marketplace (or the API caller) sent it."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "reserved"
        SHORT = "short", "short (reserved past the available stock)"
        NEEDS_MAPPING = "needs_mapping", "needs mapping"
        COMMITTED = "committed", "committed (shipped)"
        RELEASED = "released", "released"
        RETURNED = "returned", "returned"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    line_number = models.PositiveIntegerField()
    line_key = models.CharField(
        max_length=300, blank=True, help_text="The marketplace's stable key of the line."
    )
    sku = models.CharField(max_length=200, blank=True, help_text="The SKU as sent.")
    keys = models.JSONField(default=dict, blank=True, help_text="The listing keys as sent.")
    name = models.CharField(max_length=300, blank=True)
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines"
    )
    quantity = models.DecimalField(**QUANTITY)
    unit_price = models.DecimalField(**MONEY, null=True, blank=True)
    discount = models.DecimalField(**MONEY, null=True, blank=True)
    vat_rate = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    vat_amount = models.DecimalField(**MONEY, null=True, blank=True)
    warehouse = models.ForeignKey(
        Warehouse, on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines"
    )
    reservation = models.OneToOneField(
        Reservation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="order_line",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEEDS_MAPPING)
    revision = models.PositiveIntegerField(
        default=0,
        help_text="Bumped each time the line's stock is held anew (its quantity changed); "
        "it keys the line's current reservation.",
    )
    restocked_quantity = models.DecimalField(**QUANTITY, null=True, blank=True)
    restocked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["order_id", "line_number"]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_number"], name="uniq_order_line_number"),
            models.UniqueConstraint(
                fields=["order", "line_key"],
                condition=~Q(line_key=""),
                name="uniq_order_line_key",
            ),
        ]
        indexes = [
            models.Index(fields=["product"], name="order_line_product_idx"),
            models.Index(fields=["status"], name="order_line_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}/{self.line_number} {self.sku}"


class OrderEvent(models.Model):
    """One change of an order (or one update that changed nothing, and why): append-only."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "webhook event"
        POLL = "poll", "poll"
        API = "api", "API"
        STAFF = "staff", "staff"
        SYSTEM = "system", "system"

    class Kind(models.TextChoices):
        CREATED = "created", "created"
        STATUS = "status", "status changed"
        RAW_STATUS = "raw_status", "marketplace status recorded"
        STALE = "stale", "ignored: older than the state applied"
        BACKWARD = "backward", "ignored: lower state after a higher one"
        MAPPED = "mapped", "lines mapped"
        PARKED = "parked", "parked: lines need mapping"
        OVERSOLD = "oversold", "oversold"
        RESTOCKED = "restocked", "returned line restocked"
        REPROCESSED = "reprocessed", "reprocessed"
        QUANTITY = "quantity", "line quantity changed by the marketplace"
        STOCK_MISMATCH = "stock_mismatch", "line's reservation closed outside the order"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    raw_status = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    actor = models.CharField(max_length=150, blank=True)
    event_ref = models.CharField(
        max_length=200, blank=True, help_text="e.g. webhook_event:123, the API key, the line."
    )
    source_updated_at = models.DateTimeField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["order_id", "id"]
        indexes = [models.Index(fields=["order", "id"], name="order_event_order_idx")]

    def __str__(self) -> str:
        arrow = f" {self.from_status or '-'} -> {self.to_status}" if self.to_status else ""
        return f"{self.kind}{arrow}"
