"""The ERP agent console: who is online, when each agent last called, token rotation.

Agents are registered here or through the API; both go through `agent_register`, which
shows the token once. An existing agent is read-only here (status and heartbeat belong to
the agent and the health check); "rotate token" issues a new token at once.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from core.admin import actor_of
from erp_mapping.admin.reconcile import may_reconcile, reconcile_now
from erp_mapping.admin.sync import breaker_label
from erp_mapping.clients.breaker import breaker_states
from erp_mapping.models import ErpAgent
from erp_mapping.selectors import agent_vendor_ids
from erp_mapping.services.agents import agent_register, agent_token_rotate

_SHOWN = [
    "vendor",
    "erp_type",
    "agent_url",
    "status",
    "last_heartbeat_at",
    "agent_version",
    "token_prefix",
    "registered_by",
    "created_at",
    "updated_at",
]


@admin.register(ErpAgent)
class ErpAgentAdmin(admin.ModelAdmin):
    list_display = [
        "vendor",
        "erp_type",
        "status",
        "last_heartbeat_at",
        "token_prefix",
        "agent_version",
        "agent_url",
        "circuit",
    ]
    list_filter = ["status", "erp_type"]
    search_fields = ["vendor__name", "agent_url", "token_prefix"]
    list_select_related = ["vendor"]
    actions = ["rotate_tokens", "reconcile_stock"]

    def get_fields(self, request: HttpRequest, obj: ErpAgent | None = None) -> list[str]:
        return [*_SHOWN, "circuit"] if obj is not None else ["vendor", "agent_url", "erp_type"]

    def get_readonly_fields(self, request: HttpRequest, obj: ErpAgent | None = None) -> list:
        return [*_SHOWN, "circuit"] if obj is not None else []

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        # Read every agent's circuit in one round trip; the rows then read the cached states.
        breaker_states(agent_vendor_ids())
        return super().changelist_view(request, extra_context)

    @admin.display(description="circuit")
    def circuit(self, obj: ErpAgent) -> str:
        """The circuit breaker of calls to this agent (orders, reconciliation)."""
        return breaker_label(obj.vendor_id)

    def has_delete_permission(self, request: HttpRequest, obj: ErpAgent | None = None) -> bool:
        return False  # re-register or rotate instead

    def save_model(
        self, request: HttpRequest, obj: ErpAgent, form: forms.Form, change: bool
    ) -> None:
        if change:
            return  # nothing is editable on an existing agent
        data = form.cleaned_data
        registered = agent_register(
            vendor=data["vendor"],
            agent_url=data["agent_url"],
            erp_type=data["erp_type"],
            registered_by=actor_of(request),
        )
        obj.pk = registered.agent.pk
        self.message_user(
            request,
            format_html(
                "Copy this agent token and outbound secret now; they are not shown again: "
                "token <code id='new-agent-token'>{}</code>, outbound secret "
                "<code id='new-agent-secret'>{}</code>",
                registered.token,
                registered.outbound_secret,
            ),
            messages.WARNING,
        )

    @admin.action(description="Rotate the token of selected agents", permissions=["change"])
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[ErpAgent]) -> None:
        actor = actor_of(request)
        rotated = [
            (agent.vendor.name, agent_token_rotate(agent=agent, actor=actor))
            for agent in queryset.select_related("vendor")
        ]
        self.message_user(
            request,
            format_html(
                "Copy these agent tokens now; they are not shown again (the old ones no "
                "longer work): {}",
                format_html_join(", ", "{}: <code class='new-agent-token'>{}</code>", rotated),
            ),
            messages.WARNING,
        )

    def has_reconcile_permission(self, request: HttpRequest) -> bool:
        return may_reconcile(request)

    @admin.action(description="Reconcile stock with the ERP now", permissions=["reconcile"])
    def reconcile_stock(self, request: HttpRequest, queryset: QuerySet[ErpAgent]) -> None:
        reconcile_now(request, set(queryset.values_list("vendor_id", flat=True)))
