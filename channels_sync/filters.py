"""Query filters of the channels API (django-filter)."""

import django_filters

from channels_sync.models import Channel, ChannelListing, ChannelType, PushAttempt
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
