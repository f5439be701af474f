"""The webhook events console: read-only, with the raw body shown and a reprocess action."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from core.admin import KeptRecordAdmin, actor_of
from webhooks.models import WebhookEvent
from webhooks.selectors import body_preview
from webhooks.services.events import webhook_events_reprocess


@admin.register(WebhookEvent)
class WebhookEventAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "channel",
        "source",
        "topic",
        "order_id",
        "notified_status",
        "status",
        "attempts",
        "received_at",
        "processed_at",
    ]
    list_filter = ["status", "source", "topic", "channel"]
    search_fields = ["event_key", "order_id", "correlation_id"]
    date_hierarchy = "received_at"
    list_select_related = ["channel"]
    actions = ["reprocess_selected"]
    fields = [
        "channel",
        "source",
        "topic",
        "event_key",
        "order_id",
        "notified_status",
        "status",
        "attempts",
        "error",
        "received_at",
        "processed_at",
        "next_attempt_at",
        "queued_at",
        "locked_until",
        "correlation_id",
        "headers",
        "pretty_body",
    ]
    readonly_fields = fields

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", body_preview(obj.body))

    @admin.action(
        description="Reprocess (read the bodies again and queue their processing)",
        permissions=["change"],
    )
    def reprocess_selected(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        queued = webhook_events_reprocess(event_ids=ids, actor=actor_of(request))
        self.message_user(request, f"Queued {len(queued)} event(s) again.", messages.SUCCESS)
        held = len(ids) - len(queued)
        if held:
            self.message_user(
                request, f"{held} event(s) are being processed right now; left alone.", "warning"
            )
