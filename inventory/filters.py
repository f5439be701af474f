"""Query filters of the inventory API (django-filter)."""

import django_filters
from django.db.models import F, Q, QuerySet

from core import filters
from inventory.models import Product, Reservation, StockLevel, StockMovement, Warehouse


class ProductFilter(filters.FilterSet):
    sku = django_filters.CharFilter(field_name="sku")
    vendor = django_filters.UUIDFilter(field_name="vendor_id")
    discontinued = filters.BooleanFilter(field_name="is_discontinued")
    variant_group = django_filters.CharFilter(field_name="variant_group")
    search = django_filters.CharFilter(method="filter_search", label="SKU, name or barcode")

    class Meta:
        model = Product
        fields = ["sku", "vendor", "discontinued", "variant_group", "search"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(sku__icontains=value) | Q(name__icontains=value) | Q(barcode=value)
        )


class StockLevelFilter(filters.FilterSet):
    sku = django_filters.CharFilter(field_name="product__sku")
    warehouse = django_filters.CharFilter(field_name="warehouse__code")
    vendor = django_filters.UUIDFilter(field_name="product__vendor_id")
    below_min = filters.BooleanFilter(method="filter_below_min")

    class Meta:
        model = StockLevel
        fields = ["sku", "warehouse", "vendor", "below_min"]

    def filter_below_min(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        below = Q(min_stock__isnull=False, min_stock__gt=F("on_hand") - F("reserved"))
        return queryset.filter(below) if value else queryset.exclude(below)


class StockMovementFilter(filters.FilterSet):
    sku = django_filters.CharFilter(field_name="level__product__sku")
    warehouse = django_filters.CharFilter(field_name="level__warehouse__code")
    kind = django_filters.ChoiceFilter(choices=StockMovement.Kind.choices)
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    reference = django_filters.CharFilter(field_name="reference")

    class Meta:
        model = StockMovement
        fields = ["sku", "warehouse", "kind", "since", "reference"]


class ReservationFilter(filters.FilterSet):
    sku = django_filters.CharFilter(field_name="level__product__sku")
    status = django_filters.ChoiceFilter(choices=Reservation.Status.choices)
    reference = django_filters.CharFilter(field_name="reference")

    class Meta:
        model = Reservation
        fields = ["sku", "status", "reference"]


class WarehouseFilter(filters.FilterSet):
    vendor = django_filters.UUIDFilter(field_name="vendor_id", label="Vendor id (all when omitted)")

    class Meta:
        model = Warehouse
        fields = ["vendor"]
