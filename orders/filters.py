"""Query filters of the orders API (django-filter)."""

import django_filters

from core import filters
from orders.models import Order


class OrderFilter(filters.FilterSet):
    channel = django_filters.NumberFilter(field_name="channel_id")
    external_id = django_filters.CharFilter(field_name="external_id")
    status = django_filters.ChoiceFilter(choices=Order.Status.choices)
    needs_mapping = filters.BooleanFilter(field_name="needs_mapping")
    placed_after = filters.IsoDateTimeFilter(field_name="placed_at", lookup_expr="gte")
    placed_before = filters.IsoDateTimeFilter(field_name="placed_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = [
            "channel",
            "external_id",
            "status",
            "needs_mapping",
            "placed_after",
            "placed_before",
        ]
