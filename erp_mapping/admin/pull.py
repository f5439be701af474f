"""Console for the nightly pull: ERP connections (write-only token) and the runs."""

import json

import structlog
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from core.admin import KeptRecordAdmin, actor_of
from core.cache import QUEUE_ERRORS
from erp_mapping.models import ErpConnection, SyncRun
from erp_mapping.services.connections import erp_connection_set
from erp_mapping.tasks.pull import pull_vendor

logger = structlog.get_logger(__name__)


def _pull_now(request: HttpRequest, vendor_ids: set, *, dry_run: bool) -> None:
    """Queue one pull per vendor (run inline in the embedded mode) and say what happened.

    A queue that is down is told as such, per vendor, rather than failing the page.
    """
    queued, failed = 0, 0
    for vendor_id in sorted(vendor_ids, key=str):
        try:
            pull_vendor.delay(str(vendor_id), SyncRun.Trigger.ADMIN, dry_run)
        except QUEUE_ERRORS:
            logger.exception("erp_pull.enqueue_failed", vendor_id=str(vendor_id))
            failed += 1
            continue
        queued += 1
    kind = "Dry-run pull" if dry_run else "Pull"
    if queued:
        messages.success(
            request, f"{kind} queued for {queued} vendor(s); the runs appear under Sync runs."
        )
    if failed:
        messages.error(
            request,
            f"{kind} could not be queued for {failed} vendor(s): the task queue is unavailable. "
            "Try again once it is back.",
        )


def _may_pull(request: HttpRequest) -> bool:
    """Starting a pull writes stock, so it takes the right to change the vendor's connection."""
    return request.user.has_perm("erp_mapping.change_erpconnection")


class ErpConnectionForm(forms.ModelForm):
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown. Leave empty to keep the stored token.",
    )

    class Meta:
        model = ErpConnection
        fields = ["vendor", "base_url", "token", "enabled"]

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and not data.get("token"):
            self.add_error("token", "A new connection needs a token.")
        return data


@admin.register(ErpConnection)
class ErpConnectionAdmin(admin.ModelAdmin):
    form = ErpConnectionForm
    list_display = ["vendor", "base_url", "enabled", "updated_at"]
    list_filter = ["enabled"]
    actions = ["pull_now", "dry_run_now"]

    def get_readonly_fields(self, request: HttpRequest, obj: ErpConnection | None = None):
        return ["vendor"] if obj is not None else []

    def save_model(self, request, obj: ErpConnection, form, change: bool) -> None:
        data = form.cleaned_data
        saved, _ = erp_connection_set(
            vendor=obj.vendor,
            base_url=data["base_url"],
            token=data.get("token") or None,
            enabled=data["enabled"],
            actor=actor_of(request),
        )
        obj.pk = saved.pk

    def has_pull_permission(self, request: HttpRequest) -> bool:
        return _may_pull(request)

    @admin.action(description="Pull stock from the ERP now", permissions=["pull"])
    def pull_now(self, request: HttpRequest, queryset: QuerySet[ErpConnection]) -> None:
        _pull_now(request, set(queryset.values_list("vendor_id", flat=True)), dry_run=False)

    @admin.action(description="Dry-run a pull now (report only)", permissions=["pull"])
    def dry_run_now(self, request: HttpRequest, queryset: QuerySet[ErpConnection]) -> None:
        _pull_now(request, set(queryset.values_list("vendor_id", flat=True)), dry_run=True)


@admin.register(SyncRun)
class SyncRunAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "vendor",
        "status",
        "trigger",
        "dry_run",
        "started_at",
        "duration_s",
        "skus_processed",
        "items_changed",
        "invalid_rows",
        "unknown_skus",
        "api_latency_ms",
        "archive_path",
    ]
    list_filter = ["status", "trigger", "dry_run", "vendor"]
    list_select_related = ["vendor"]
    date_hierarchy = "started_at"
    actions = ["pull_now"]
    fields = [
        "vendor",
        "status",
        "trigger",
        "dry_run",
        "started_at",
        "completed_at",
        "duration_ms",
        "attempts",
        "skus_processed",
        "items_changed",
        "invalid_rows",
        "unknown_skus",
        "api_latency_ms",
        "bytes_received",
        "archive_path",
        "error_code",
        "error_message",
        "details_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="duration (s)", ordering="duration_ms")
    def duration_s(self, obj: SyncRun) -> str:
        return "-" if obj.duration_ms is None else f"{obj.duration_ms / 1000:.1f}"

    @admin.display(description="details")
    def details_pretty(self, obj: SyncRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True))

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_pull_permission(self, request: HttpRequest) -> bool:
        # Runs are never changed, so the action cannot ask for "change" on them.
        return _may_pull(request)

    @admin.action(description="Pull these runs' vendors again now", permissions=["pull"])
    def pull_now(self, request: HttpRequest, queryset: QuerySet[SyncRun]) -> None:
        _pull_now(request, set(queryset.values_list("vendor_id", flat=True)), dry_run=False)
