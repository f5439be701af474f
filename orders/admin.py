"""The orders console: orders with their lines and events, staff actions, line mapping, restock.

Nothing is edited directly: cancel, ship (orders entered through the API; a marketplace
order's state is the marketplace's) and reprocess are actions on orders; a line is mapped
to a product, or a returned line restocked, from the line's own page. Each goes through
`orders.services`, which writes the order's events and the stock ledger.
"""

from decimal import Decimal

import structlog
from django import forms
from django.contrib import admin, messages
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from channels_sync.selectors_conflicts import order_conflict_counts
from core.admin import KeptRecordAdmin, actor_of
from core.errors import DomainError
from inventory.models import Product, Warehouse
from orders.models import Order, OrderEvent, OrderLine
from orders.services import (
    Actor,
    order_cancel,
    order_line_map,
    order_line_restock,
    order_reprocess,
    order_ship,
)

logger = structlog.get_logger(__name__)


def _staff(request: HttpRequest) -> Actor:
    return Actor(source=OrderEvent.Source.STAFF, actor=actor_of(request))


class ShortLinesFilter(admin.SimpleListFilter):
    title = "short lines"
    parameter_name = "has_short_lines"

    def lookups(self, request, model_admin):
        return [("yes", "Has short lines"), ("no", "No short lines")]

    def queryset(self, request, queryset):
        short = {"lines__status": OrderLine.Status.SHORT}
        if self.value() == "yes":
            return queryset.filter(**short).distinct()
        if self.value() == "no":
            return queryset.exclude(**short)
        return queryset


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "line_number",
        "sku",
        "keys",
        "product",
        "warehouse",
        "quantity",
        "unit_price",
        "status",
        "reservation",
        "restocked_quantity",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "kind",
        "from_status",
        "to_status",
        "raw_status",
        "source",
        "actor",
        "event_ref",
        "source_updated_at",
        "message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


_ORDER_FIELDS = [
    "vendor",
    "channel",
    "external_id",
    "order_number",
    "status",
    "raw_status",
    "needs_mapping",
    "placed_at",
    "paid_at",
    "source_updated_at",
    "confirmed_at",
    "customer",
    "address",
    "amount",
    "currency",
    "payment_method",
    "erp_reference",
    "erp_status",
    "erp_document_id",
    "erp_synced_at",
    "erp_sync_error",
    "notes",
    "created_at",
    "updated_at",
]


@admin.register(Order)
class OrderAdmin(KeptRecordAdmin):
    list_display = [
        "order_number",
        "channel",
        "external_id",
        "status",
        "raw_status",
        "needs_mapping",
        "placed_at",
        "amount",
    ]
    list_filter = ["status", "channel", "needs_mapping", ShortLinesFilter]
    search_fields = ["order_number", "external_id", "lines__sku"]
    list_select_related = ["channel"]
    fields = [*_ORDER_FIELDS, "conflicts_link"]
    readonly_fields = fields
    inlines = [OrderLineInline, OrderEventInline]
    actions = ["cancel_selected", "ship_selected", "reprocess_selected"]

    def save_model(self, request: HttpRequest, obj: Order, form: forms.Form, change: bool) -> None:
        return  # nothing is editable: orders change through the services (the actions)

    @admin.display(description="conflicts")
    def conflicts_link(self, obj: Order) -> str:
        """The oversell and duplicate-order conflicts naming this order, in the console."""
        if obj.pk is None:
            return "-"
        total, opened = order_conflict_counts(order_id=obj.pk)
        url = reverse("admin:channels_sync_conflict_changelist") + f"?order={obj.pk}"
        return format_html('<a href="{}">{} ({} open)</a>', url, total, opened)

    def _each(self, request: HttpRequest, queryset: QuerySet[Order], service, done: str) -> None:
        """Run the service on each order (its own transaction); report every outcome.

        One order refused, or failing in the database (a value out of range, a lock
        timeout), is reported by its number and does not stop the others.
        """
        changed, refused, failed = 0, [], []
        for order in queryset.order_by("pk"):
            try:
                service(order=order, actor=_staff(request))
            except DomainError as exc:
                refused.append(f"{order.order_number}: {exc.message}")
                continue
            except DatabaseError as exc:
                logger.exception("order.admin_action_failed", order_id=order.pk, action=done)
                failed.append(f"{order.order_number}: {type(exc).__name__}")
                continue
            changed += 1
        if changed:
            self.message_user(request, f"{changed} order(s) {done}.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused), messages.ERROR)
        if failed:
            self.message_user(
                request,
                "Failed (logged; try again or look at the order): " + "; ".join(failed),
                messages.ERROR,
            )

    @admin.action(description="Cancel an API order (release the stock)", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, order_cancel, "cancelled")

    @admin.action(
        description="Mark an API order shipped (commit the stock)", permissions=["change"]
    )
    def ship_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, order_ship, "marked shipped")

    @admin.action(
        description="Reprocess (map lines again, bring stock in line)", permissions=["change"]
    )
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        self._each(request, queryset, order_reprocess, "reprocessed")


class OrderLineForm(forms.ModelForm):
    """A line's staff operations: map it to a product, or restock it once returned."""

    map_to = forms.ModelChoiceField(
        queryset=Product.objects.none(),
        required=False,
        label="Map to product",
        help_text="For a line that matches no listing: its stock is then held as the order says.",
    )
    map_warehouse = forms.ModelChoiceField(
        queryset=Warehouse.objects.none(),
        required=False,
        label="From warehouse",
        help_text="Blank: the channel's warehouse (or the vendor's default).",
    )
    restock_quantity = forms.DecimalField(
        required=False,
        max_digits=14,
        decimal_places=3,
        min_value=Decimal("0.001"),
        help_text="Returned goods put back on hand; blank: the whole line.",
    )
    restock_reason = forms.CharField(
        required=False, max_length=300, help_text="Required to restock a returned line."
    )
    restock = forms.BooleanField(required=False, label="Restock this returned line")

    class Meta:
        model = OrderLine
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        vendor_id = self.instance.order.vendor_id if self.instance.pk else None
        self.fields["map_to"].queryset = Product.objects.filter(vendor_id=vendor_id)
        self.fields["map_warehouse"].queryset = Warehouse.objects.filter(
            vendor_id=vendor_id, active=True
        )

    def clean(self) -> dict:
        data = super().clean()
        line = self.instance
        if data.get("map_to") and line.reservation_id is not None:
            self.add_error("map_to", "The line already holds stock.")
        if data.get("restock"):
            if line.status != OrderLine.Status.RETURNED:
                self.add_error("restock", "Only a returned line can be restocked.")
            elif line.restocked_at is not None:
                self.add_error("restock", "The line was restocked already.")
            if not (data.get("restock_reason") or "").strip():
                self.add_error("restock_reason", "Say why the goods go back on hand.")
        return data


_LINE_FIELDS = [
    "order_link",
    "line_number",
    "line_key",
    "sku",
    "keys",
    "name",
    "product",
    "warehouse",
    "quantity",
    "unit_price",
    "discount",
    "vat_rate",
    "vat_amount",
    "status",
    "reservation",
    "restocked_quantity",
    "restocked_at",
]


@admin.register(OrderLine)
class OrderLineAdmin(KeptRecordAdmin):
    form = OrderLineForm
    list_display = ["order", "line_number", "sku", "product", "quantity", "status"]
    list_filter = ["status"]
    search_fields = ["sku", "order__order_number", "order__external_id"]
    list_select_related = ["order", "product"]
    readonly_fields = _LINE_FIELDS
    fieldsets = [
        (None, {"fields": _LINE_FIELDS}),
        ("Map to a product", {"fields": ["map_to", "map_warehouse"]}),
        ("Restock (returned lines)", {"fields": ["restock", "restock_quantity", "restock_reason"]}),
    ]

    @admin.display(description="order")
    def order_link(self, obj: OrderLine) -> str:
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.order_number)

    def save_model(
        self, request: HttpRequest, obj: OrderLine, form: forms.Form, change: bool
    ) -> None:
        data = form.cleaned_data
        try:
            if data.get("map_to"):
                order_line_map(
                    line=obj,
                    product=data["map_to"],
                    warehouse=data.get("map_warehouse"),
                    actor=_staff(request),
                )
                self.message_user(request, f"Line mapped to {data['map_to'].sku}.")
            if data.get("restock"):
                order_line_restock(
                    line=obj,
                    quantity=data.get("restock_quantity"),
                    reason=data["restock_reason"],
                    actor=_staff(request),
                )
                self.message_user(request, "Returned goods put back on hand.")
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
