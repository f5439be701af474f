"""Query filters of the ERP API (django-filter)."""

import django_filters

from core import filters
from erp_mapping.models import ErpCodeMapping, ErpSyncJob, SyncRun


class ErpCodeMappingFilter(filters.FilterSet):
    vendor = django_filters.UUIDFilter(field_name="vendor_id", label="Vendor id (all when omitted)")
    type = django_filters.ChoiceFilter(
        field_name="mapping_type", choices=ErpCodeMapping.Type.choices
    )
    active = filters.BooleanFilter(field_name="is_active")
    erp_code = django_filters.CharFilter(field_name="erp_code")

    class Meta:
        model = ErpCodeMapping
        fields = ["vendor", "type", "active", "erp_code"]


class SyncRunFilter(filters.FilterSet):
    vendor = django_filters.UUIDFilter(field_name="vendor_id", label="Vendor id (all when omitted)")
    status = django_filters.ChoiceFilter(choices=SyncRun.Status.choices)
    dry_run = filters.BooleanFilter()

    class Meta:
        model = SyncRun
        fields = ["vendor", "status", "dry_run"]


class ErpSyncJobFilter(filters.FilterSet):
    vendor = django_filters.UUIDFilter(field_name="vendor_id", label="Vendor id (all when omitted)")
    status = django_filters.ChoiceFilter(choices=ErpSyncJob.Status.choices)
    operation = django_filters.ChoiceFilter(choices=ErpSyncJob.Operation.choices)
    order = django_filters.NumberFilter(field_name="order_id", label="Order id")

    class Meta:
        model = ErpSyncJob
        fields = ["vendor", "status", "operation", "order"]
