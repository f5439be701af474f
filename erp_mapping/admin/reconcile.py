"""Console for the ERP reconciliation: the events (read-only) and "reconcile now"."""

import json

import structlog
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from core.admin import KeptRecordAdmin
from core.cache import QUEUE_ERRORS
from erp_mapping.models import ReconciliationEvent
from erp_mapping.tasks.reconcile import reconcile_vendor

logger = structlog.get_logger(__name__)


def may_reconcile(request: HttpRequest) -> bool:
    """Reconciling writes stock, so it takes the right to change the vendor's agent."""
    return request.user.has_perm("erp_mapping.change_erpagent")


def reconcile_now(request: HttpRequest, vendor_ids: set) -> None:
    """Queue one reconciliation per vendor (run inline in the embedded mode) and say so.

    A queue that is down is told as such, per vendor, rather than failing the page.
    """
    queued, failed = 0, 0
    for vendor_id in sorted(vendor_ids, key=str):
        try:
            reconcile_vendor.delay(str(vendor_id), ReconciliationEvent.Trigger.ADMIN)
        except QUEUE_ERRORS:
            logger.exception("erp_reconcile.enqueue_failed", vendor_id=str(vendor_id))
            failed += 1
            continue
        queued += 1
    if queued:
        messages.success(
            request,
            f"Reconciliation queued for {queued} vendor(s); the events appear under "
            "ERP reconciliations.",
        )
    if failed:
        messages.error(
            request,
            f"Reconciliation could not be queued for {failed} vendor(s): the task queue is "
            "unavailable. Try again once it is back.",
        )


@admin.register(ReconciliationEvent)
class ReconciliationEventAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "vendor",
        "status",
        "trigger",
        "started_at",
        "duration_s",
        "skus_local",
        "ranges_compared",
        "requests",
        "rows_fetched",
        "drift_found",
        "drift_fixed",
        "error_code",
    ]
    list_filter = ["status", "trigger", "vendor"]
    list_select_related = ["vendor"]
    date_hierarchy = "started_at"
    actions = ["reconcile_again"]
    fields = [
        "vendor",
        "status",
        "trigger",
        "started_at",
        "completed_at",
        "duration_ms",
        "skus_local",
        "ranges_compared",
        "ranges_differing",
        "requests",
        "rows_fetched",
        "drift_found",
        "drift_fixed",
        "error_code",
        "error_message",
        "details_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="duration (s)", ordering="duration_ms")
    def duration_s(self, obj: ReconciliationEvent) -> str:
        return "-" if obj.duration_ms is None else f"{obj.duration_ms / 1000:.1f}"

    @admin.display(description="details")
    def details_pretty(self, obj: ReconciliationEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True))

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_reconcile_permission(self, request: HttpRequest) -> bool:
        return may_reconcile(request)

    @admin.action(description="Reconcile these vendors again now", permissions=["reconcile"])
    def reconcile_again(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationEvent]
    ) -> None:
        reconcile_now(request, set(queryset.values_list("vendor_id", flat=True)))
