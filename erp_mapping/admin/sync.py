"""Console for orders sent to the ERP: the sync jobs, their history, send now and retry."""

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin import KeptRecordAdmin, actor_of
from erp_mapping.clients.breaker import BreakerState, breaker_states
from erp_mapping.models import ErpSyncEvent, ErpSyncJob
from erp_mapping.selectors import agent_vendor_ids
from erp_mapping.services.erp_sync import erp_sync_job_retry, erp_sync_job_send_now

S = ErpSyncJob.Status
# A job's history shows its latest events only (a job waiting through a long outage could
# otherwise render thousands of rows).
HISTORY_LIMIT = 50


class ErpSyncEventInline(admin.TabularInline):
    """The job's latest `HISTORY_LIMIT` events, oldest first."""

    model = ErpSyncEvent
    extra = 0
    max_num = HISTORY_LIMIT
    can_delete = False
    fields = [
        "created_at",
        "kind",
        "from_status",
        "to_status",
        "attempt",
        "http_status",
        "actor",
        "message",
    ]
    readonly_fields = fields
    ordering = ["id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ErpSyncEvent]:
        # The formset filters by job after this: keep the latest rows per job by id, which
        # a slice cannot do before that filter, through a subquery on the job's events.
        queryset = super().get_queryset(request)
        job_id = request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        if job_id is None or not str(job_id).isdigit():
            return queryset
        latest = (
            ErpSyncEvent.objects.filter(job_id=int(job_id))
            .order_by("-id")
            .values_list("id", flat=True)[:HISTORY_LIMIT]
        )
        return queryset.filter(id__in=list(latest))

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ErpSyncJob)
class ErpSyncJobAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "operation",
        "status",
        "vendor",
        "order_link",
        "attempts",
        "next_attempt_at",
        "last_error_short",
        "erp_reference",
        "completed_via",
        "wait_reason",
    ]
    list_filter = ["status", "operation", "wait_reason", "completed_via", "vendor"]
    search_fields = ["order__order_number", "erp_reference", "erp_document_id", "=id"]
    list_select_related = ["vendor", "order"]
    date_hierarchy = "created_at"
    actions = ["send_now", "retry_dead"]
    inlines = [ErpSyncEventInline]
    fields = [
        "order_link",
        "vendor",
        "operation",
        "status",
        "wait_reason",
        "attempts",
        "next_attempt_at",
        "locked_until",
        "sent_at",
        "completed_at",
        "completed_via",
        "http_status",
        "last_error",
        "erp_reference",
        "erp_document_id",
        "idempotency_key",
        "reported_failure",
        "correlation_id",
        "circuit",
        "payload_pretty",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="order", ordering="order__order_number")
    def order_link(self, obj: ErpSyncJob) -> str:
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        return format_html('<a href="{}">{}</a>', url, obj.order.order_number)

    @admin.display(description="last error")
    def last_error_short(self, obj: ErpSyncJob) -> str:
        return obj.last_error[:80]

    @admin.display(description="agent circuit")
    def circuit(self, obj: ErpSyncJob) -> str:
        return breaker_label(obj.vendor_id)

    @admin.display(description="payload")
    def payload_pretty(self, obj: ErpSyncJob) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # Each vendor's circuit once above the list (one Redis round trip for all), not a
        # read per row.
        states = breaker_states(agent_vendor_ids())
        if states:
            shown = "; ".join(f"vendor {s.vendor_id[:8]}: {_label(s)}" for s in states)
            self.message_user(request, f"Agent circuits: {shown}", messages.INFO)
        return super().changelist_view(request, extra_context)

    def has_send_permission(self, request: HttpRequest) -> bool:
        # Jobs are never edited, so the actions cannot ask for "change" on them.
        return request.user.has_perm("erp_mapping.change_erpagent")

    @admin.action(description="Send the selected jobs now", permissions=["send"])
    def send_now(self, request: HttpRequest, queryset: QuerySet[ErpSyncJob]) -> None:
        actor = actor_of(request)
        sendable = queryset.filter(status__in=[S.PENDING, S.FAILED, S.AWAITING_CALLBACK])
        ids = list(sendable.values_list("pk", flat=True))
        for job_id in ids:
            erp_sync_job_send_now(job_id=job_id, actor=actor)
        skipped = queryset.count() - len(ids)
        text = f"{len(ids)} job(s) queued to send now"
        if skipped:
            text += f"; {skipped} skipped (completed, dead: use retry, or being sent)"
        self.message_user(request, text, messages.SUCCESS if ids else messages.WARNING)

    @admin.action(description="Retry the selected dead jobs", permissions=["send"])
    def retry_dead(self, request: HttpRequest, queryset: QuerySet[ErpSyncJob]) -> None:
        actor = actor_of(request)
        ids = list(queryset.filter(status=S.DEAD).values_list("pk", flat=True))
        for job_id in ids:
            erp_sync_job_retry(job_id=job_id, actor=actor)
        self.message_user(
            request,
            f"{len(ids)} dead job(s) given new attempts and queued",
            messages.SUCCESS if ids else messages.WARNING,
        )


def breaker_label(vendor_id: object) -> str:
    """The circuit of the vendor's agent, in a few words."""
    return _label(breaker_states([vendor_id])[0])


def _label(state: BreakerState) -> str:
    if state.error:
        return f"unknown (Redis: {state.error[:60]})"
    if state.state == "closed":
        return f"closed ({state.failures} failure(s) in a row)" if state.failures else "closed"
    if state.retry_at is not None:
        return f"{state.state} (trial from {state.retry_at:%H:%M:%S} UTC)"
    return state.state
