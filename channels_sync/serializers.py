"""Channels at the edge: channels (credentials write-only), listings, rules, preview, pushes.

Credentials and the webhook secret are accepted and never returned: a channel shows
`credentials_set`, the names of the credential fields it holds and whether it needs to be
authorised again. Listing batches are checked row by row by `listings_upsert`; only the
envelope is checked here (`listing_rows`).
"""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from channels_sync.adapters import adapter_class
from channels_sync.models import (
    CONFLICT_POLICY_HELP,
    AllocationRule,
    Channel,
    ChannelListing,
    ChannelType,
    ConflictPolicy,
    PushAttempt,
)
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.listings import MAX_LISTING_ROWS, ListingBatchResult
from core.batch import (
    BatchRowResultSerializer,
    batch_answer,
    batch_rows,
    counts_field,
    status_choices,
)
from core.serializers import HttpUrlField
from inventory.serializers import QuantityField

LISTING_ROW_STATUSES = ("created", "updated", "unchanged", "invalid")


def _quantity(**kwargs) -> QuantityField:
    return QuantityField(**kwargs)


# --- Channels ---------------------------------------------------------------------------------


class ChannelSerializer(serializers.ModelSerializer):
    """A channel as the API shows it: never a credential or the webhook secret."""

    vendor_id = serializers.UUIDField(read_only=True)
    warehouses = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    credentials_set = serializers.SerializerMethodField()
    credential_fields = serializers.SerializerMethodField(
        help_text="The names of the credential fields held (never their values)."
    )
    webhook_secret_set = serializers.SerializerMethodField()
    webhook_url = serializers.SerializerMethodField(
        help_text="Register this URL with the marketplace for the channel's webhooks."
    )
    effective_rate_limit_per_second = serializers.SerializerMethodField(
        help_text="The channel's rate limit, or its marketplace's default."
    )
    effective_rate_limit_burst = serializers.SerializerMethodField()
    effective_batch_size = serializers.SerializerMethodField()
    base_url = HttpUrlField(read_only=True)
    auth_base_url = HttpUrlField(read_only=True, allow_blank=True)
    listing_count = serializers.IntegerField(read_only=True)
    dirty_count = serializers.IntegerField(read_only=True)
    error_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Channel
        fields = [
            "id",
            "name",
            "type",
            "vendor_id",
            "base_url",
            "auth_base_url",
            "warehouses",
            "priority",
            "active",
            "push_enabled",
            "dry_run",
            "rate_limit_per_second",
            "rate_limit_burst",
            "batch_size",
            "effective_rate_limit_per_second",
            "effective_rate_limit_burst",
            "effective_batch_size",
            "credentials_set",
            "credential_fields",
            "webhook_secret_set",
            "webhook_url",
            "webhook_last_received_at",
            "webhook_signature_failures",
            "webhook_signature_failed_at",
            "orders_cursor",
            "orders_polled_at",
            "conflict_policy",
            "options",
            "needs_reauth",
            "reauth_reason",
            "token_expires_at",
            "last_push_at",
            "listing_count",
            "dirty_count",
            "error_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_credentials_set(self, obj: Channel) -> bool:
        return bool(obj.credentials)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_credential_fields(self, obj: Channel) -> list[str]:
        return sorted(obj.credentials or {})

    def get_webhook_secret_set(self, obj: Channel) -> bool:
        return bool(obj.webhook_secret)

    @extend_schema_field(serializers.URLField())
    def get_webhook_url(self, obj: Channel) -> str:
        return channel_webhook_url(obj)

    def get_effective_rate_limit_per_second(self, obj: Channel) -> float:
        return obj.rate_limit_per_second or adapter_class(obj.type).default_rate_per_second

    def get_effective_rate_limit_burst(self, obj: Channel) -> int:
        return obj.rate_limit_burst or adapter_class(obj.type).default_burst

    def get_effective_batch_size(self, obj: Channel) -> int:
        return obj.batch_size or adapter_class(obj.type).default_batch_size


def _url(**kwargs) -> HttpUrlField:
    return HttpUrlField(**kwargs)


class _ChannelSettingsSerializer(serializers.Serializer):
    """The fields a channel's owner sets; required and defaults differ on create and change."""

    auth_base_url = _url(
        required=False,
        allow_blank=True,
        help_text="Where tokens are refreshed when not the API base (blank: the default).",
    )
    webhook_secret = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        write_only=True,
        trim_whitespace=False,
        help_text="Stored encrypted, never returned.",
    )
    priority = serializers.IntegerField(required=False, min_value=0, max_value=2_147_483_647)
    active = serializers.BooleanField(required=False)
    push_enabled = serializers.BooleanField(required=False)
    dry_run = serializers.BooleanField(
        required=False, help_text="Compute and record desired quantities; never send them."
    )
    rate_limit_per_second = serializers.FloatField(
        required=False, allow_null=True, min_value=0.001, help_text="Null: the type's default."
    )
    rate_limit_burst = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Null: the type's default."
    )
    batch_size = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Listings per call; null: the type's default (at most the type's maximum).",
    )
    conflict_policy = serializers.ChoiceField(
        choices=ConflictPolicy.choices,
        required=False,
        help_text=CONFLICT_POLICY_HELP,
    )
    options = serializers.DictField(
        required=False,
        help_text="The type's settings that are not secrets, checked by the type (400 "
        "`invalid_options` naming the option). Other types take none. Type `rest` takes "
        "`auth` (bearer, basic, api_key, hmac), `api_key_header`, `stock` {path, method "
        "(POST, PUT, PATCH), mode (per_item, batch), body (a JSON template with {{sku}}, "
        "{{quantity}}, {{location}}, {{variant_id}}, {{expected}}, {{idempotency_key}}; in "
        "batch the envelope with {{items}}), item (batch: each item's template), ok, ok_value, "
        "error, sku (answer paths such as results[].ok)}, `read` {path, method (GET, POST), "
        "mode, query, body, sku, quantity, batch_size} and `orders` {list, fetch, "
        "status_map}.",
    )


class ChannelCreateSerializer(_ChannelSettingsSerializer):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=ChannelType.choices)
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")
    base_url = _url(
        required=False,
        help_text="The API base; omitted: the marketplace's production host (settings).",
    )
    credentials = serializers.DictField(
        write_only=True,
        help_text="The type's credential fields (stored encrypted, never returned).",
    )
    warehouses = serializers.ListField(
        child=serializers.CharField(max_length=50),
        allow_empty=True,
        help_text="Codes of the vendor's warehouses whose stock the channel sells.",
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("base_url"):
            attrs["base_url"] = settings.CHANNEL_DEFAULT_BASE_URLS.get(attrs["type"], "")
        return attrs


class ChannelUpdateSerializer(_ChannelSettingsSerializer):
    name = serializers.CharField(max_length=200, required=False)
    base_url = _url(required=False)
    credentials = serializers.DictField(
        required=False,
        write_only=True,
        help_text="Merged into the stored credentials (a null value removes a field); "
        "new credentials clear the re-authorisation flag.",
    )
    warehouses = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, allow_empty=True
    )


# --- Listings ---------------------------------------------------------------------------------


class ChannelListingSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku", read_only=True)
    keys = serializers.SerializerMethodField(
        help_text="The marketplace's keys, named as the channel type names them."
    )

    class Meta:
        model = ChannelListing
        fields = [
            "id",
            "sku",
            "keys",
            "desired_quantity",
            "desired_reason",
            "last_pushed_quantity",
            "last_pushed_at",
            "last_observed_quantity",
            "last_observed_at",
            "channel_quantity",
            "dirty",
            "dirty_since",
            "status",
            "last_error",
            "push_failures",
            "next_push_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_keys(self, obj: ChannelListing) -> dict[str, str]:
        return adapter_class(self.context["channel_type"]).keys_from_listing(obj)


class ListingRowSerializer(serializers.Serializer):
    """One row of a listing batch (documentation: `listings_upsert` checks each row)."""

    sku = serializers.CharField(max_length=100)
    keys = serializers.DictField(
        child=serializers.CharField(),
        help_text="Shopee: item_id, model_id ('0' without models), location_id; Lazada: "
        "item_id, sku_id, seller_sku; TikTok Shop / Tokopedia: product_id, sku_id, "
        "warehouse_id; Shopify: inventory_item_id, location_id; Amazon: seller_sku; eBay: "
        "sku, offer_id; Square: catalog_object_id, location_id; custom REST shop: sku, "
        "variant_id, location.",
    )


class ListingBatchSerializer(serializers.Serializer):
    rows = ListingRowSerializer(many=True, help_text=f"Up to {MAX_LISTING_ROWS:,} rows.")


class ListingRowResultSerializer(BatchRowResultSerializer):
    status = status_choices(LISTING_ROW_STATUSES)
    code = serializers.CharField(
        allow_blank=True,
        help_text="Why a row is invalid: `invalid_row`, `invalid_keys`, `unknown_sku`, "
        "`duplicate`, `keys_taken`; empty otherwise.",
    )
    sku = serializers.CharField(allow_blank=True)
    listing_id = serializers.IntegerField(required=False)


class ListingBatchResultSerializer(serializers.Serializer):
    counts = counts_field()
    results = ListingRowResultSerializer(many=True, help_text="One result per row, in order.")


def listing_rows(data: Any) -> list:
    """The rows of a listing batch, or raise 400 `invalid_body` / `batch_too_large`."""
    return batch_rows(data, limit=MAX_LISTING_ROWS)


def listing_batch_data(result: ListingBatchResult) -> dict:
    return batch_answer([row.as_dict() for row in result.rows], LISTING_ROW_STATUSES)


# --- Rules ----------------------------------------------------------------------------------


class AllocationRuleSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku", read_only=True, allow_null=True)
    listing_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = AllocationRule
        fields = [
            "id",
            "scope",
            "sku",
            "listing_id",
            "strategy",
            "parameter",
            "buffer_units",
            "buffer_percent",
            "max_shown",
            "zero_below",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AllocationRuleWriteSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=AllocationRule.Scope.choices, default=AllocationRule.Scope.CHANNEL
    )
    sku = serializers.CharField(
        max_length=100, required=False, help_text="The product of a `product` rule."
    )
    listing_id = serializers.IntegerField(
        required=False, min_value=1, help_text="The listing of a `listing` rule."
    )
    strategy = serializers.ChoiceField(choices=AllocationRule.Strategy.choices)
    parameter = _quantity(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="percentage: the percent (0-100); fixed: the quantity; priority: the cap.",
    )
    buffer_units = _quantity(default=0, min_value=0, help_text="Units held back.")
    buffer_percent = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=0,
        min_value=0,
        help_text="Percent of the allocation held back (0 to 100).",
    )
    max_shown = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2_147_483_647
    )
    zero_below = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=2_147_483_647,
        help_text="Show 0 when the allocation is below this.",
    )


# --- Preview, attempts, pushes ----------------------------------------------------------------


class PreviewQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        default=0, min_value=0, help_text="Start after this listing id (the last `next_after`)."
    )
    limit = serializers.IntegerField(default=1000, min_value=1, max_value=1000)


class PreviewRowSerializer(serializers.Serializer):
    listing_id = serializers.IntegerField()
    sku = serializers.CharField()
    pool = _quantity(help_text="Available stock over the channel's warehouses.")
    current = serializers.IntegerField(allow_null=True, help_text="The last pushed quantity.")
    desired = serializers.IntegerField(allow_null=True, help_text="Null: the listing is excluded.")
    change = serializers.BooleanField(help_text="Whether a push would send a new quantity.")
    reason = serializers.CharField(allow_blank=True)


class PreviewSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    rows = PreviewRowSerializer(many=True)
    next_after = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after` for the next page; null on the last page."
    )


class PushAttemptSerializer(serializers.ModelSerializer):
    channel_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = PushAttempt
        fields = [
            "id",
            "channel_id",
            "outcome",
            "item_count",
            "items",
            "http_status",
            "latency_ms",
            "error",
            "attempt",
            "idempotency_key",
            "correlation_id",
            "created_at",
        ]
        read_only_fields = fields


class PushQuerySerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        default=False, help_text="Run a dry run now and answer its report (nothing is sent)."
    )


class PushQueuedSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    queued = serializers.BooleanField(
        help_text="False when a push of the channel is queued already (this one rides on it)."
    )


class PushReportSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    dry_run = serializers.BooleanField()
    planned = serializers.IntegerField()
    pushed = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    failed = serializers.IntegerField()
    throttled = serializers.IntegerField()
    retried = serializers.IntegerField()
    dead_lettered = serializers.IntegerField()
    calls = serializers.IntegerField()
    waited_seconds = serializers.FloatField()
    requeue_after = serializers.FloatField(allow_null=True)
    stopped = serializers.CharField(
        allow_blank=True,
        help_text="Why the run ended early: busy, inactive, push_disabled, needs_reauth, "
        "throttled, failing, token_refresh_failed; empty when it ran to the end.",
    )
    errors = serializers.ListField(child=serializers.CharField())


class ReconcileQueuedSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    queued = serializers.BooleanField(help_text="The run is queued (or, without a broker, done).")
