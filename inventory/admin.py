"""The inventory console: catalogue, stock levels (with "adjust stock"), ledger, reservations.

Quantities are never edited in a form field: the "adjust stock" page calls the stock
services, which lock, check and write the ledger like every other path.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin import KeptRecordAdmin, actor_of
from core.errors import DomainError
from core.field_errors import service_errors
from inventory import services
from inventory.errors import ReservationOwnedByOrder
from inventory.forms import ProductAdminForm, QuantityFormField
from inventory.models import Product, Reservation, StockLevel, StockMovement, Vendor, Warehouse
from inventory.services.catalog import PRODUCT_FIELDS, WAREHOUSE_FIELDS


@admin.register(Vendor)
class VendorAdmin(admin.ModelAdmin):
    list_display = ["name", "is_default", "id", "created_at"]
    search_fields = ["name", "id"]
    readonly_fields = ["id"]


class WarehouseAdminForm(forms.ModelForm):
    class Meta:
        model = Warehouse
        fields = ["vendor", "code", "name", "erp_id", "type", "is_default", "is_main", "active"]

    def clean(self) -> dict:
        data = super().clean()
        active = data.get("active", getattr(self.instance, "active", True))
        with service_errors(form=self):
            services.warehouse_default_check(
                is_default=bool(data.get("is_default")),
                active=bool(active),
                code=data.get("code") or self.instance.code or "",
            )
        return data


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):
    form = WarehouseAdminForm
    list_display = ["code", "name", "vendor", "type", "is_default", "is_main", "active"]
    list_filter = ["vendor", "type", "active", "is_default"]
    search_fields = ["code", "name", "erp_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Warehouse | None = None) -> list:
        # Stock levels and ERP rows refer to a warehouse by vendor and code.
        return ["vendor", "code"] if obj is not None else []

    def save_model(
        self, request: HttpRequest, obj: Warehouse, form: forms.Form, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            fields = {k: data[k] for k in form.changed_data if k in WAREHOUSE_FIELDS}
            services.warehouse_update(warehouse=obj, **fields)
            return
        created = services.warehouse_create(
            vendor=data["vendor"],
            code=data["code"],
            **{k: v for k, v in data.items() if k in WAREHOUSE_FIELDS},
        )
        obj.pk, obj.is_default = created.pk, created.is_default


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = [
        "sku",
        "name",
        "vendor",
        "variant_group",
        "unit_code",
        "price_incl_vat",
        "manage_stock",
        "is_discontinued",
    ]
    list_filter = ["vendor", "is_discontinued", "manage_stock", "allow_negative_stock", "family"]
    search_fields = ["sku", "name", "barcode", "erp_id", "variant_group"]
    list_select_related = ["vendor"]
    readonly_fields = [
        "vat_amount",
        "discontinued_at",
        "content_hash",
        "source_updated_at",
        "created_at",
        "updated_at",
    ]

    def save_model(
        self, request: HttpRequest, obj: Product, form: forms.Form, change: bool
    ) -> None:
        fields = {k: v for k, v in form.cleaned_data.items() if k in PRODUCT_FIELDS}
        if change:
            services.product_update(product=obj, **fields)
        else:
            created = services.product_create(
                vendor=form.cleaned_data["vendor"],
                sku=form.cleaned_data["sku"],
                **fields,
            )
            obj.pk = created.pk


class AdjustStockForm(forms.Form):
    OPERATIONS = [("adjust", "Add or remove (a change)"), ("set", "Set to a counted quantity")]

    operation = forms.ChoiceField(choices=OPERATIONS, widget=forms.RadioSelect, initial="adjust")
    quantity = QuantityFormField(
        help_text="adjust: the change (negative removes); set: the quantity counted.",
    )
    unit_cost = forms.DecimalField(
        max_digits=14,
        decimal_places=4,
        min_value=Decimal(0),
        required=False,
        help_text="Cost per unit of stock received (optional).",
    )
    reason = forms.CharField(max_length=500, help_text="Why (kept in the ledger).")


class StockLevelLimitsForm(forms.ModelForm):
    class Meta:
        model = StockLevel
        fields = ["min_stock", "max_stock"]

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors:
            with service_errors(form=self):
                services.stock_level_limits_check(
                    min_stock=data.get("min_stock"), max_stock=data.get("max_stock")
                )
        return data


@admin.register(StockLevel)
class StockLevelAdmin(KeptRecordAdmin):
    form = StockLevelLimitsForm
    list_display = [
        "product",
        "warehouse",
        "on_hand",
        "reserved",
        "available_display",
        "min_stock",
        "max_stock",
        "updated_at",
        "adjust_link",
    ]
    list_filter = ["warehouse", "product__vendor"]
    search_fields = ["product__sku", "product__name", "product__barcode"]
    list_select_related = ["product", "warehouse"]
    readonly_fields = [
        "product",
        "warehouse",
        "on_hand",
        "reserved",
        "available_display",
        "ordered_quantity",
        "unit_cost",
        "stock_value",
        "last_synced_at",
        "updated_at",
    ]
    fields = [*readonly_fields[:-1], "min_stock", "max_stock", "updated_at"]

    @admin.display(description="available")
    def available_display(self, obj: StockLevel) -> Decimal:
        return obj.available

    @admin.display(description="")
    def adjust_link(self, obj: StockLevel) -> str:
        url = reverse("admin:inventory_stocklevel_adjust", args=[obj.pk])
        return format_html('<a href="{}">adjust stock</a>', url)

    def save_model(
        self, request: HttpRequest, obj: StockLevel, form: forms.Form, change: bool
    ) -> None:
        services.stock_level_set_limits(level=obj, min_stock=obj.min_stock, max_stock=obj.max_stock)

    def get_urls(self) -> list:
        return [
            path(
                "<int:level_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="inventory_stocklevel_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, level_id: int) -> HttpResponse:
        level = get_object_or_404(
            StockLevel.objects.select_related("product", "warehouse"), pk=level_id
        )
        if not self.has_change_permission(request, level):
            return HttpResponse(status=403)
        form = AdjustStockForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            origin = services.Origin(source="admin", actor=actor_of(request), reason=data["reason"])
            try:
                if data["operation"] == "set":
                    services.stock_set(
                        product=level.product,
                        warehouse=level.warehouse,
                        quantity=data["quantity"],
                        unit_cost=data["unit_cost"],
                        origin=origin,
                    )
                else:
                    services.stock_adjust(
                        product=level.product,
                        warehouse=level.warehouse,
                        delta=data["quantity"],
                        unit_cost=data["unit_cost"],
                        origin=origin,
                    )
            except DomainError as exc:
                form.add_error(None, f"{exc.message} ({exc.code})")
            else:
                level.refresh_from_db()
                self.message_user(
                    request,
                    f"{level.product.sku} in {level.warehouse.code}: on hand now {level.on_hand}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:inventory_stocklevel_change", args=[level.pk])
                )
        return TemplateResponse(
            request,
            "admin/inventory/stocklevel/adjust.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Adjust stock: {level.product.sku} in {level.warehouse.code}",
                "opts": self.model._meta,
                "level": level,
                "form": form,
                "recent": level.movements.order_by("-id")[:10],
            },
        )


class LevelColumns:
    """SKU and warehouse columns for rows that belong to a stock level."""

    @admin.display(description="SKU", ordering="level__product__sku")
    def sku(self, obj: StockMovement | Reservation) -> str:
        return obj.level.product.sku

    @admin.display(description="warehouse", ordering="level__warehouse__code")
    def warehouse(self, obj: StockMovement | Reservation) -> str:
        return obj.level.warehouse.code


@admin.register(StockMovement)
class StockMovementAdmin(LevelColumns, KeptRecordAdmin):
    list_display = [
        "id",
        "created_at",
        "sku",
        "warehouse",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "on_hand_after",
        "reserved_after",
        "source",
        "actor",
        "reference",
    ]
    list_filter = ["kind", "source", "level__warehouse"]
    search_fields = ["level__product__sku", "reference", "correlation_id", "idempotency_key"]
    list_select_related = ["level__product", "level__warehouse"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # the ledger grows without bound

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the ledger is append-only


@admin.register(Reservation)
class ReservationAdmin(LevelColumns, KeptRecordAdmin):
    list_display = [
        "id",
        "sku",
        "warehouse",
        "quantity",
        "status",
        "reference",
        "expires_at",
        "created_at",
    ]
    list_filter = ["status", "level__warehouse"]
    search_fields = ["reference", "level__product__sku", "idempotency_key"]
    list_select_related = ["level__product", "level__warehouse"]
    actions = ["release_selected"]
    readonly_fields = [
        "level",
        "quantity",
        "reference",
        "status",
        "expires_at",
        "closed_at",
        "idempotency_key",
        "owner",
        "created_at",
        "updated_at",
    ]

    @admin.action(description="Release selected reservations", permissions=["change"])
    def release_selected(self, request: HttpRequest, queryset: QuerySet[Reservation]) -> None:
        origin = services.Origin(
            source="admin", actor=actor_of(request), reason="released in admin"
        )
        released, closed, owned = 0, 0, []
        for reservation in queryset.select_related("level__product", "level__warehouse"):
            try:
                services.stock_release(reservation=reservation, origin=origin)
                released += 1
            except ReservationOwnedByOrder:
                owned.append(reservation.reference or str(reservation.pk))
            except DomainError:
                closed += 1
        self.message_user(request, f"Released {released} reservation(s).", messages.SUCCESS)
        if closed:
            self.message_user(request, f"{closed} were no longer active.", messages.WARNING)
        if owned:
            self.message_user(
                request,
                "Not released, they hold an order's stock (cancel or ship the order instead): "
                + ", ".join(owned),
                messages.ERROR,
            )
