"""The channels console: channels (write-only secrets), listings, allocation rules, attempts.

Every change goes through the channel services: a channel's credentials are never shown,
only replaced or merged (a JSON object typed into a write-only box), like an ERP
connection's token. Quantities are never edited here: pushes and the stock services own
them; "retry" gives a failed listing a fresh start and pushes it.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from channels_sync import admin_conflicts  # noqa: F401 - registers the conflict console
from channels_sync.models import (
    CONFLICT_POLICY_HELP,
    AllocationRule,
    Channel,
    ChannelListing,
    Conflict,
    PushAttempt,
)
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.channels import (
    channel_check,
    channel_create,
    channel_update,
    options_clean,
    rule_check,
    rule_set,
)
from channels_sync.services.dirty import push_enqueue
from channels_sync.services.listings import listing_push_retry, listing_set_excluded
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import reconcile_enqueue
from channels_sync.services.signature_failures import channel_signature_failures_flush
from core.admin import KeptRecordAdmin, actor_of
from core.cache import CACHE_ERRORS
from core.errors import ServiceUnavailable
from core.field_errors import service_errors
from core.forms import json_text_load
from core.validators import http_url_validate

# What an existing channel's form may change (type and vendor are fixed once it exists).
_CHANNEL_SETTINGS = [
    "name",
    "base_url",
    "auth_base_url",
    "priority",
    "active",
    "push_enabled",
    "dry_run",
    "rate_limit_per_second",
    "rate_limit_burst",
    "batch_size",
    "conflict_policy",
]
_CHANNEL_STATE = [
    "credential_names",
    "webhook_secret_set",
    "needs_reauth",
    "reauth_reason",
    "token_expires_at",
    "last_push_at",
    "webhook_url",
    "webhook_last_received_at",
    "webhook_signature_failures",
    "webhook_signature_failed_at",
    "orders_cursor",
    "orders_polled_at",
    "created_at",
    "updated_at",
]


# The services' argument names that the channel form names otherwise.
_CHANNEL_FIELDS = {"credentials": "new_credentials", "options": "options_json"}


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one just typed (like a password)."""

    def format_value(self, value: object) -> None:
        return None


class ChannelForm(forms.ModelForm):
    new_credentials = forms.CharField(
        label="New credentials (merged)",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 6, "cols": 80, "autocomplete": "off"}),
        help_text='A JSON object, e.g. {"access_token": "...", "refresh_token": "..."}. '
        "Merged into the stored credentials (null removes a field); stored encrypted and "
        "never shown. Leave empty to keep the stored ones.",
    )
    options_json = forms.CharField(
        label="Options",
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80}),
        help_text="The type's settings that are not secrets, as a JSON object (a custom REST "
        "shop's endpoints, templates and answer paths). Empty: none.",
    )
    new_webhook_secret = forms.CharField(
        label="New webhook secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown. Leave empty to keep the stored one.",
    )

    class Meta:
        model = Channel
        fields = ["type", "vendor", "warehouses", *_CHANNEL_SETTINGS]
        help_texts = {"conflict_policy": CONFLICT_POLICY_HELP}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["options_json"] = json.dumps(self.instance.options or {}, indent=2)

    def clean_options_json(self) -> dict:
        text = self.cleaned_data["options_json"].strip()
        if not text:
            return {}
        value = json_text_load(text)
        if not isinstance(value, dict):
            raise forms.ValidationError("The options must be a JSON object.")
        return value

    def clean_new_credentials(self) -> dict:
        text = self.cleaned_data["new_credentials"].strip()
        if not text:
            return {}
        value = json_text_load(text)
        if not isinstance(value, dict):
            raise forms.ValidationError("The credentials must be a JSON object.")
        return value

    def clean(self) -> dict:
        data = super().clean()
        for name in ("base_url", "auth_base_url"):
            if data.get(name):
                try:
                    http_url_validate(data[name])
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
        instance = self.instance
        vendor = data.get("vendor") if instance.pk is None else instance.vendor
        if self.errors or vendor is None:
            return data
        # The service's own checks, shown on the fields (`channel_create` runs them again).
        with service_errors(form=self, fields=_CHANNEL_FIELDS):
            options = options_clean(
                instance.type if instance.pk else data["type"], data.get("options_json")
            )
            channel_check(
                vendor=vendor,
                type=instance.type if instance.pk else data["type"],
                warehouses=data.get("warehouses") or [],
                credentials=data.get("new_credentials"),
                batch_size=data.get("batch_size"),
                channel=instance if instance.pk else None,
                options=options,
            )
        return data


class AllocationRuleInline(admin.TabularInline):
    """The channel's rules, read-only here: they change through the rule console."""

    model = AllocationRule
    fk_name = "channel"
    fields = [
        "scope",
        "product",
        "listing",
        "strategy",
        "parameter",
        "buffer_units",
        "buffer_percent",
        "max_shown",
        "zero_below",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        return False


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = [
        "name",
        "type",
        "vendor",
        "active",
        "push_enabled",
        "dry_run",
        "needs_reauth",
        "last_push_at",
        "listing_count",
        "dirty_count",
        "error_count",
    ]
    list_filter = ["type", "active", "dry_run", "needs_reauth", "vendor"]
    search_fields = ["name"]
    list_select_related = ["vendor"]
    filter_horizontal = ["warehouses"]
    inlines = [AllocationRuleInline]
    actions = ["push_now", "dry_run_now", "reconcile_now"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Channel]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                listings_total=Count("listings"),
                listings_dirty=Count("listings", filter=Q(listings__dirty=True)),
                listings_error=Count(
                    "listings", filter=Q(listings__status=ChannelListing.Status.ERROR)
                ),
            )
        )

    def get_object(self, request: HttpRequest, object_id: str, from_field=None) -> Channel | None:
        # Signature failures wait in the cache for a few seconds: show them counted.
        if str(object_id).isdigit():
            channel_signature_failures_flush(channel_ids=[int(object_id)])
        return super().get_object(request, object_id, from_field)

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list:
        state = [("State", {"fields": _CHANNEL_STATE})] if obj is not None else []
        return [
            (None, {"fields": ["name", "type", "vendor", "base_url", "auth_base_url"]}),
            ("Options", {"fields": ["options_json"]}),
            ("Stock", {"fields": ["warehouses"]}),
            ("Secrets (write-only)", {"fields": ["new_credentials", "new_webhook_secret"]}),
            (
                "Pushing",
                {
                    "fields": [
                        "active",
                        "push_enabled",
                        "dry_run",
                        "priority",
                        "rate_limit_per_second",
                        "rate_limit_burst",
                        "batch_size",
                    ]
                },
            ),
            ("Conflicts", {"fields": ["conflict_policy"]}),
            *state,
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list:
        return ["type", "vendor", *_CHANNEL_STATE] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        return False  # deactivate instead: its listings and attempts keep their history

    @admin.display(description="listings", ordering="listings_total")
    def listing_count(self, obj: Channel) -> int:
        return obj.listings_total

    @admin.display(description="dirty", ordering="listings_dirty")
    def dirty_count(self, obj: Channel) -> int:
        return obj.listings_dirty

    @admin.display(description="errors", ordering="listings_error")
    def error_count(self, obj: Channel) -> int:
        return obj.listings_error

    @admin.display(description="credential fields held")
    def credential_names(self, obj: Channel) -> str:
        return ", ".join(sorted(obj.credentials or {})) or "-"

    @admin.display(description="webhook URL (register it with the marketplace)")
    def webhook_url(self, obj: Channel) -> str:
        return channel_webhook_url(obj)

    @admin.display(description="webhook secret set", boolean=True)
    def webhook_secret_set(self, obj: Channel) -> bool:
        return bool(obj.webhook_secret)

    def save_model(
        self, request: HttpRequest, obj: Channel, form: forms.Form, change: bool
    ) -> None:
        data = form.cleaned_data
        warehouses = list(data["warehouses"])
        settings_ = {name: data[name] for name in _CHANNEL_SETTINGS}
        settings_["options"] = data["options_json"]
        if data["new_webhook_secret"]:
            settings_["webhook_secret"] = data["new_webhook_secret"]
        if change:
            channel_update(
                channel=obj,
                actor=actor_of(request),
                credentials=data["new_credentials"] or None,
                warehouses=warehouses,
                **settings_,
            )
            return
        created = channel_create(
            vendor=data["vendor"],
            type=data["type"],
            credentials=data["new_credentials"],
            warehouses=warehouses,
            actor=actor_of(request),
            **settings_,
        )
        obj.pk = created.pk

    def save_related(self, request: HttpRequest, form: forms.Form, formsets, change: bool) -> None:
        # The services set the warehouses; the rules inline is read-only.
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.action(
        description="Push now (queue a push of the dirty listings)", permissions=["change"]
    )
    def push_now(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        ids = sorted(queryset.values_list("pk", flat=True))
        try:
            queued = push_enqueue(ids)
        except ServiceUnavailable as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        waiting = len(ids) - len(queued)
        self.message_user(
            request,
            f"Push queued for {len(queued)} channel(s)"
            + (f"; {waiting} had one queued already." if waiting else "."),
            messages.SUCCESS,
        )

    @admin.action(description="Dry run now (compute, send nothing)", permissions=["change"])
    def dry_run_now(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset.order_by("pk"):
            try:
                report = channel_push(channel_id=channel.pk, dry_run=True)
            except (ServiceUnavailable, *CACHE_ERRORS):
                # The run lock lives in Redis: without it a dry run cannot tell it runs alone.
                self.message_user(
                    request,
                    f"Dry run of {channel.name} could not start: Redis, which holds the run "
                    "lock, is unavailable. Try again once it is back.",
                    messages.ERROR,
                )
                continue
            stopped = f" (stopped: {report.stopped})" if report.stopped else ""
            self.message_user(
                request,
                f"Dry run of {channel.name}: {report.planned} planned, "
                f"{report.planned - report.unchanged} would change, "
                f"{report.unchanged} unchanged{stopped}.",
                messages.WARNING if report.stopped else messages.SUCCESS,
            )

    @admin.action(description="Reconcile stock now (read it back, compare)", permissions=["change"])
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        ids = sorted(queryset.values_list("pk", flat=True))
        try:
            queued = reconcile_enqueue(channel_ids=ids, trigger="admin")
        except ServiceUnavailable as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            f"Stock reconciliation queued for {len(queued)} channel(s); differences open "
            "conflicts.",
            messages.SUCCESS,
        )


# --- Listings ---------------------------------------------------------------------------------

_LISTING_FIELDS = [
    "channel",
    "product",
    "external_item_id",
    "external_variant_id",
    "external_sku",
    "external_location_id",
    "status",
    "desired_quantity",
    "desired_reason",
    "last_pushed_quantity",
    "last_pushed_at",
    "last_observed_quantity",
    "last_observed_at",
    "channel_quantity",
    "dirty",
    "dirty_version",
    "dirty_since",
    "push_failures",
    "next_push_at",
    "last_error",
    "conflicts_link",
    "created_at",
    "updated_at",
]


@admin.register(ChannelListing)
class ChannelListingAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "channel",
        "sku",
        "external_item_id",
        "external_variant_id",
        "external_location_id",
        "desired_quantity",
        "last_pushed_quantity",
        "last_pushed_at",
        "dirty",
        "status",
        "push_failures",
        "next_push_at",
        "short_error",
        "conflicts_link",
    ]
    list_filter = ["dirty", "status", "channel"]
    search_fields = [
        "product__sku",
        "external_item_id",
        "external_variant_id",
        "external_sku",
    ]
    list_select_related = ["channel", "product"]
    fields = _LISTING_FIELDS
    readonly_fields = _LISTING_FIELDS
    actions = ["retry_selected", "exclude_selected", "include_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChannelListing]:
        open_conflicts = Q(conflicts__status=Conflict.Status.OPEN)
        return (
            super()
            .get_queryset(request)
            .annotate(open_conflicts=Count("conflicts", filter=open_conflicts))
        )

    @admin.display(description="SKU", ordering="product__sku")
    def sku(self, obj: ChannelListing) -> str:
        return obj.product.sku

    @admin.display(description="open conflicts", ordering="open_conflicts")
    def conflicts_link(self, obj: ChannelListing) -> str:
        url = reverse("admin:channels_sync_conflict_changelist") + f"?listing={obj.pk}"
        return format_html('<a href="{}">{} open</a>', url, getattr(obj, "open_conflicts", 0))

    @admin.display(description="error")
    def short_error(self, obj: ChannelListing) -> str:
        return obj.last_error[:120]

    def save_model(
        self, request: HttpRequest, obj: ChannelListing, form: forms.Form, change: bool
    ) -> None:
        return  # nothing is editable: listings change through the API and the actions

    @admin.action(description="Retry (clear the error and push)", permissions=["change"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[ChannelListing]) -> None:
        retried = sum(
            listing_push_retry(listing_id=pk) for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(
            request, f"{retried} listing(s) reset and marked for a push.", messages.SUCCESS
        )

    @admin.action(description="Exclude from pushes", permissions=["change"])
    def exclude_selected(self, request: HttpRequest, queryset: QuerySet[ChannelListing]) -> None:
        self._set_excluded(request, queryset, excluded=True)

    @admin.action(description="Include in pushes again", permissions=["change"])
    def include_selected(self, request: HttpRequest, queryset: QuerySet[ChannelListing]) -> None:
        self._set_excluded(request, queryset, excluded=False)

    def _set_excluded(
        self, request: HttpRequest, queryset: QuerySet[ChannelListing], *, excluded: bool
    ) -> None:
        listings = list(queryset.order_by("pk"))
        for listing in listings:
            listing_set_excluded(listing=listing, excluded=excluded, actor=actor_of(request))
        verb = "Excluded" if excluded else "Included"
        self.message_user(request, f"{verb} {len(listings)} listing(s).", messages.SUCCESS)


# --- Rules ------------------------------------------------------------------------------------

_RULE_TARGET = ["channel", "scope", "product", "listing"]
_RULE_VALUES = [
    "strategy",
    "parameter",
    "buffer_units",
    "buffer_percent",
    "max_shown",
    "zero_below",
]


# The rule service's argument names that the rule form names otherwise.
_RULE_FIELDS = {"sku": "product", "listing_id": "listing"}


class AllocationRuleForm(forms.ModelForm):
    class Meta:
        model = AllocationRule
        fields = [*_RULE_TARGET, *_RULE_VALUES]

    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk is None:
            target = {name: data.get(name) for name in _RULE_TARGET}
        else:  # an existing rule's target is fixed (read-only)
            target = {name: getattr(self.instance, name) for name in _RULE_TARGET}
        channel, product, listing = target["channel"], target["product"], target["listing"]
        if self.errors or channel is None:
            return data
        # The service's own checks, shown on the fields (`rule_set` runs them again).
        with service_errors(form=self, fields=_RULE_FIELDS):
            rule_check(
                channel=channel,
                scope=target["scope"],
                sku=product.sku if product else None,
                listing_id=listing.pk if listing else None,
                **{name: data.get(name) for name in _RULE_VALUES},
            )
        if self.instance.pk is None and not self.errors:
            # A new rule for a target that has one replaces it (`rule_set`), as the API
            # does: validate it as a change of that rule, not as a duplicate.
            existing = AllocationRule.objects.filter(
                channel=channel, scope=target["scope"], product=product, listing=listing
            ).first()
            if existing is not None:
                self.instance = existing
        return data


@admin.register(AllocationRule)
class AllocationRuleAdmin(admin.ModelAdmin):
    form = AllocationRuleForm
    list_display = [
        "id",
        "channel",
        "scope",
        "target",
        "strategy",
        "parameter",
        "buffer_units",
        "buffer_percent",
        "max_shown",
        "zero_below",
        "updated_at",
    ]
    list_filter = ["channel", "scope", "strategy"]
    search_fields = ["product__sku"]
    list_select_related = ["channel", "product", "listing"]
    raw_id_fields = ["product", "listing"]

    def get_readonly_fields(self, request: HttpRequest, obj: AllocationRule | None = None):
        return [*_RULE_TARGET, "created_at", "updated_at"] if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a rule is replaced (or set back to "all"), keeping the marks right

    @admin.display(description="target")
    def target(self, obj: AllocationRule) -> str:
        if obj.product_id:
            return obj.product.sku
        if obj.listing_id:
            return f"listing {obj.listing_id}"
        return "(channel default)"

    def save_model(
        self, request: HttpRequest, obj: AllocationRule, form: forms.Form, change: bool
    ) -> None:
        data = form.cleaned_data
        target = obj if change else None
        channel = target.channel if target else data["channel"]
        product = target.product if target else data.get("product")
        listing = target.listing if target else data.get("listing")
        rule, _ = rule_set(
            channel=channel,
            actor=actor_of(request),
            scope=target.scope if target else data["scope"],
            sku=product.sku if product else None,
            listing_id=listing.pk if listing else None,
            **{name: data[name] for name in _RULE_VALUES},
        )
        obj.pk = rule.pk


# --- Attempts ---------------------------------------------------------------------------------


@admin.register(PushAttempt)
class PushAttemptAdmin(KeptRecordAdmin):
    list_display = [
        "id",
        "channel",
        "outcome",
        "item_count",
        "http_status",
        "latency_ms",
        "attempt",
        "short_error",
        "created_at",
    ]
    list_filter = ["outcome", "channel"]
    search_fields = ["idempotency_key", "correlation_id"]
    list_select_related = ["channel"]
    date_hierarchy = "created_at"
    fields = [
        "channel",
        "outcome",
        "item_count",
        "items_pretty",
        "http_status",
        "latency_ms",
        "attempt",
        "error",
        "idempotency_key",
        "correlation_id",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="error")
    def short_error(self, obj: PushAttempt) -> str:
        return obj.error[:120]

    @admin.display(description="items")
    def items_pretty(self, obj: PushAttempt) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.items, indent=2))

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
