"""The conflict console: open conflicts with both figures, bulk strategies, a resolve form.

Nothing here decides anything: every resolution goes through `conflict_resolve`, which
validates, moves stock, writes the conflict's history and queues the pushes. The list
filters by kind, channel, status and age; `?listing=<id>` and `?order=<id>` (the links
from the listing and order consoles) narrow it to one listing's or one order's conflicts.
"""

from datetime import timedelta
from decimal import Decimal

import structlog
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from channels_sync.models import Conflict, ConflictEvent, ConflictStrategy
from channels_sync.selectors_conflicts import order_conflicts
from channels_sync.services.conflict_resolution import conflict_resolve
from channels_sync.services.conflict_strategies import APPLICABLE
from core.admin import KeptRecordAdmin, actor_of
from core.errors import DomainError
from core.field_errors import service_errors

logger = structlog.get_logger(__name__)

_AGES = {
    "lt1h": ("under 1 hour", "gte", timedelta(hours=1)),
    "lt1d": ("under 1 day", "gte", timedelta(days=1)),
    "gt1d": ("over 1 day", "lt", timedelta(days=1)),
    "gt7d": ("over 7 days", "lt", timedelta(days=7)),
}


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [(key, label) for key, (label, _, _) in _AGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> QuerySet[Conflict]:
        if self.value() not in _AGES:
            return queryset
        _, lookup, age = _AGES[self.value()]
        return queryset.filter(**{f"detected_at__{lookup}": timezone.now() - age})


class _LinkedFilter(admin.SimpleListFilter):
    """A filter reached by a link from another console (shown only while it applies)."""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        value = self.value()
        return [(value, f"{self.title} {value}")] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> QuerySet[Conflict]:
        value = self.value()
        if not value:
            return queryset
        # ASCII digits only: "²".isdigit() is true, and int("²") raises.
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
            return queryset.none()
        return self.narrow(queryset, int(value))

    def narrow(self, queryset: QuerySet[Conflict], pk: int) -> QuerySet[Conflict]:
        raise NotImplementedError


class ListingFilter(_LinkedFilter):
    title = "listing"
    parameter_name = "listing"

    def narrow(self, queryset: QuerySet[Conflict], pk: int) -> QuerySet[Conflict]:
        return queryset.filter(listing_id=pk)


class OrderFilter(_LinkedFilter):
    title = "order"
    parameter_name = "order"

    def narrow(self, queryset: QuerySet[Conflict], pk: int) -> QuerySet[Conflict]:
        return queryset.filter(pk__in=order_conflicts(order_id=pk).values("pk"))


class ConflictEventInline(admin.TabularInline):
    """The conflict's history, read-only."""

    model = ConflictEvent
    fields = ["created_at", "action", "strategy", "ours", "theirs", "value", "actor", "note"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["created_at", "id"]

    def has_add_permission(self, request: HttpRequest, obj: Conflict | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Conflict | None = None) -> bool:
        return False


class ResolveForm(forms.Form):
    strategy = forms.ChoiceField(choices=ConflictStrategy.choices)
    value = forms.DecimalField(
        required=False,
        max_digits=14,
        decimal_places=3,
        min_value=Decimal("0"),
        help_text="set value only: the quantity both sides are set to (an oversell: the count "
        "of the sold line's warehouse).",
    )
    note = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Kept with the conflict's history.",
    )

    def __init__(self, *args, conflict: Conflict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        applicable = APPLICABLE.get(conflict.kind, ())
        self.fields["strategy"].choices = [
            (value, label) for value, label in ConflictStrategy.choices if value in applicable
        ]


_FIELDS = [
    "kind",
    "status",
    "source",
    "vendor",
    "channel",
    "listing",
    "product",
    "reference",
    "ours",
    "theirs",
    "difference",
    "ours_at",
    "theirs_at",
    "detected_at",
    "strategy",
    "resolved_value",
    "resolved_by",
    "resolved_at",
    "note",
    "details",
    "resolve_link",
]


@admin.register(Conflict)
class ConflictAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "kind",
        "channel",
        "listing",
        "sku",
        "ours",
        "theirs",
        "difference",
        "status",
        "age",
        "source",
        "resolve_link",
    ]
    list_filter = ["kind", "status", "channel", AgeFilter, "source", ListingFilter, OrderFilter]
    search_fields = ["reference", "product__sku"]
    list_select_related = ["channel", "listing", "product"]
    fields = _FIELDS
    readonly_fields = _FIELDS
    inlines = [ConflictEventInline]
    actions = [
        "resolve_use_ours",
        "resolve_use_theirs",
        "resolve_minimum",
        "resolve_last_write_wins",
        "resolve_source_priority",
        "resolve_ignore",
    ]

    @admin.display(description="SKU", ordering="product__sku")
    def sku(self, obj: Conflict) -> str:
        return obj.product.sku if obj.product_id else "-"

    @admin.display(description="difference (theirs - ours)")
    def difference(self, obj: Conflict) -> Decimal | None:
        return obj.difference

    @admin.display(description="age", ordering="detected_at")
    def age(self, obj: Conflict) -> str:
        return timesince(obj.detected_at)

    @admin.display(description="resolve")
    def resolve_link(self, obj: Conflict) -> str:
        if obj.pk is None or obj.status != Conflict.Status.OPEN:
            return "-"
        url = reverse("admin:channels_sync_conflict_resolve", args=[obj.pk])
        return format_html('<a href="{}">resolve…</a>', url)

    def save_model(
        self, request: HttpRequest, obj: Conflict, form: forms.Form, change: bool
    ) -> None:
        return  # nothing is editable: conflicts change through the actions and the resolve form

    # --- bulk strategies ----------------------------------------------------------------------

    def _resolve_each(
        self, request: HttpRequest, queryset: QuerySet[Conflict], strategy: str
    ) -> None:
        """Resolve each selected conflict (its own transaction); report every outcome."""
        resolved, refused = 0, []
        for conflict_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                conflict_resolve(
                    conflict_id=conflict_id, strategy=strategy, actor=actor_of(request)
                )
            except DomainError as exc:
                refused.append(f"#{conflict_id}: {exc.message}")
                continue
            except DatabaseError as exc:
                logger.exception("conflict.admin_resolve_failed", conflict_id=conflict_id)
                refused.append(f"#{conflict_id}: {type(exc).__name__} (logged)")
                continue
            resolved += 1
        label = ConflictStrategy(strategy).label
        if resolved:
            self.message_user(
                request, f"{resolved} conflict(s) resolved: {label}.", messages.SUCCESS
            )
        if refused:
            self.message_user(
                request,
                f"{len(refused)} not resolved: " + "; ".join(refused),
                messages.ERROR,
            )

    @admin.action(description="Use ours (push our quantity)", permissions=["change"])
    def resolve_use_ours(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.USE_OURS)

    @admin.action(description="Use theirs (move our stock to theirs)", permissions=["change"])
    def resolve_use_theirs(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.USE_THEIRS)

    @admin.action(description="Minimum of the two", permissions=["change"])
    def resolve_minimum(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.MINIMUM)

    @admin.action(description="Last write wins", permissions=["change"])
    def resolve_last_write_wins(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.LAST_WRITE_WINS)

    @admin.action(description="Source priority (the first channel wins)", permissions=["change"])
    def resolve_source_priority(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.SOURCE_PRIORITY)

    @admin.action(description="Ignore (change nothing)", permissions=["change"])
    def resolve_ignore(self, request: HttpRequest, queryset: QuerySet[Conflict]) -> None:
        self._resolve_each(request, queryset, ConflictStrategy.IGNORE)

    # --- one conflict: any strategy, a value, a note ------------------------------------------

    def get_urls(self) -> list:
        return [
            path(
                "<int:conflict_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="channels_sync_conflict_resolve",
            ),
            *super().get_urls(),
        ]

    def resolve_view(self, request: HttpRequest, conflict_id: int) -> HttpResponse:
        conflict = get_object_or_404(
            Conflict.objects.select_related("channel", "listing", "product"), pk=conflict_id
        )
        if not self.has_change_permission(request, conflict):
            raise PermissionDenied
        form = ResolveForm(request.POST or None, conflict=conflict)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            with service_errors(form=form):
                conflict_resolve(
                    conflict_id=conflict.pk,
                    strategy=data["strategy"],
                    value=data["value"],
                    note=data["note"],
                    actor=actor_of(request),
                )
            if form.is_valid():
                label = ConflictStrategy(data["strategy"]).label
                self.message_user(
                    request, f"Conflict #{conflict.pk} resolved: {label}.", messages.SUCCESS
                )
                return HttpResponseRedirect(
                    reverse("admin:channels_sync_conflict_change", args=[conflict.pk])
                )
        return TemplateResponse(
            request,
            "admin/channels_sync/conflict/resolve.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Resolve conflict #{conflict.pk}",
                "opts": self.model._meta,
                "conflict": conflict,
                "form": form,
                "events": conflict.events.order_by("created_at", "id"),
            },
        )
