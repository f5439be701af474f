"""Query filters of the channels API (django-filter)."""

import django_filters

from channels_sync.models import Channel, ChannelListing, ChannelType, Conflict, PushAttempt
from core import filters


class ChannelFilter(filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=ChannelType.choices)
    vendor = django_filters.UUIDFilter(field_name="vendor_id")
    active = filters.BooleanFilter()
    needs_reauth = filters.BooleanFilter()

    class Meta:
        model = Channel
        fields = ["type", "vendor", "active", "needs_reauth"]


class ChannelListingFilter(filters.FilterSet):
    sku = django_filters.CharFilter(field_name="product__sku")
    dirty = filters.BooleanFilter()
    status = django_filters.ChoiceFilter(choices=ChannelListing.Status.choices)

    class Meta:
        model = ChannelListing
        fields = ["sku", "dirty", "status"]


class PushAttemptFilter(filters.FilterSet):
    outcome = django_filters.ChoiceFilter(choices=PushAttempt.Outcome.choices)

    class Meta:
        model = PushAttempt
        fields = ["outcome"]


class ConflictFilter(filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Conflict.Kind.choices)
    status = django_filters.ChoiceFilter(choices=Conflict.Status.choices)
    source = django_filters.ChoiceFilter(choices=Conflict.Source.choices)
    channel = django_filters.NumberFilter(field_name="channel_id")
    listing = django_filters.NumberFilter(field_name="listing_id")
    product = django_filters.NumberFilter(field_name="product_id")
    sku = django_filters.CharFilter(field_name="product__sku")
    reference = django_filters.CharFilter(field_name="reference")
    detected_after = filters.IsoDateTimeFilter(field_name="detected_at", lookup_expr="gte")
    detected_before = filters.IsoDateTimeFilter(field_name="detected_at", lookup_expr="lt")

    class Meta:
        model = Conflict
        fields = [
            "kind",
            "status",
            "source",
            "channel",
            "listing",
            "product",
            "sku",
            "reference",
            "detected_after",
            "detected_before",
        ]
