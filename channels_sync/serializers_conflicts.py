"""Serializers of the conflicts API: a conflict, its history, and the resolve request."""

from decimal import Decimal

from rest_framework import serializers

from channels_sync.models import Conflict, ConflictEvent, ConflictStrategy
from inventory.serializers import quantity_field

_CONFLICT_FIELDS = [
    "id",
    "kind",
    "status",
    "source",
    "vendor_id",
    "channel_id",
    "listing_id",
    "product_id",
    "sku",
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
    "created_at",
    "updated_at",
]


class ConflictSerializer(serializers.ModelSerializer):
    vendor_id = serializers.UUIDField(read_only=True)
    channel_id = serializers.IntegerField(read_only=True, allow_null=True)
    listing_id = serializers.IntegerField(read_only=True, allow_null=True)
    product_id = serializers.IntegerField(read_only=True, allow_null=True)
    sku = serializers.CharField(source="product.sku", read_only=True, allow_null=True)
    difference = serializers.DecimalField(
        max_digits=15,
        decimal_places=3,
        read_only=True,
        allow_null=True,
        help_text="theirs - ours (null when either is unknown).",
    )
    strategy = serializers.ChoiceField(
        choices=ConflictStrategy.choices,
        allow_blank=True,
        read_only=True,
        help_text="The strategy it was resolved with; blank while open.",
    )
    details = serializers.DictField(read_only=True)

    class Meta:
        model = Conflict
        fields = _CONFLICT_FIELDS
        read_only_fields = fields


class ConflictEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConflictEvent
        fields = [
            "id",
            "action",
            "strategy",
            "ours",
            "theirs",
            "value",
            "actor",
            "note",
            "correlation_id",
            "created_at",
        ]
        read_only_fields = fields


class ConflictDetailSerializer(ConflictSerializer):
    events = ConflictEventSerializer(many=True, read_only=True, help_text="Oldest first.")

    class Meta(ConflictSerializer.Meta):
        fields = [*_CONFLICT_FIELDS, "events"]
        read_only_fields = fields


class ConflictResolveSerializer(serializers.Serializer):
    strategy = serializers.ChoiceField(
        choices=ConflictStrategy.choices,
        help_text="A stock mismatch takes any; an oversell use_ours, set_value or ignore; a "
        "duplicate order use_ours or ignore.",
    )
    value = quantity_field(
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        help_text="set_value only: the quantity both sides are set to.",
    )
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
