"""API input validation and output shapes of the inventory."""

import re
from datetime import UTC
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from core.batch import BatchRowResultSerializer, counts_field, status_choices
from core.validators import sku_validate
from inventory.models import Product, Reservation, StockLevel, StockMovement, Warehouse

MAX_BATCH_ROWS = 1000
# A batch row is applied (`ok`), refused (`error`), or undone with its atomic batch.
BATCH_ROW_STATUSES = ("ok", "error", "rolled_back")
MUTATION_TYPES = ("adjust", "set", "transfer")

QUANTITY_DECIMALS = 3
QUANTITY_MAX_DIGITS = 14
# ASCII digits only: `\d` would also take Arabic-Indic and other Unicode digits.
QUANTITY_PATTERN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class QuantityField(serializers.DecimalField):
    """A quantity (14 digits, 3 decimals): a JSON number, or a string of plain decimal digits.

    Strings take an optional minus sign, ASCII digits and an optional point with decimals
    (`"12"`, `"-1.5"`, `"0.125"`). Python's `Decimal` would also read `"1e3"`, `"1_000"`,
    `"+5"`, `" 5"` and non-ASCII digits; none of them is the documented form, so they are
    refused rather than guessed at. Every quantity the API and the agent ingest read goes
    through this class.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", QUANTITY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", QUANTITY_DECIMALS)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or (
            isinstance(data, str) and not QUANTITY_PATTERN.fullmatch(data)
        ):
            self.fail("invalid")
        return super().to_internal_value(data)


class QuantityFieldSchema(OpenApiSerializerFieldExtension):
    """Document the accepted string form (drf-spectacular's own pattern is looser)."""

    target_class = QuantityField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if "pattern" in schema:
            field = self.target
            whole = field.max_digits - field.decimal_places
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            schema["pattern"] = (
                rf"^{sign}[0-9]{{1,{whole}}}(?:\.[0-9]{{1,{field.decimal_places}}})?$"
            )
        return schema


def quantity_field(**kwargs: Any) -> QuantityField:
    return QuantityField(**kwargs)


# --- Catalogue ----------------------------------------------------------------------------


class ProductSerializer(serializers.ModelSerializer):
    vendor = serializers.UUIDField(source="vendor_id", read_only=True)

    class Meta:
        model = Product
        fields = [
            "sku",
            "vendor",
            "name",
            "erp_id",
            "barcode",
            "variant_group",
            "attributes",
            "unit_code",
            "vat_code",
            "family",
            "subfamily",
            "price_excl_vat",
            "price_incl_vat",
            "vat_amount",
            "manage_stock",
            "allow_negative_stock",
            "is_discontinued",
            "discontinued_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


_PRODUCT_WRITABLE = [
    "name",
    "erp_id",
    "barcode",
    "variant_group",
    "attributes",
    "unit_code",
    "vat_code",
    "family",
    "subfamily",
    "price_excl_vat",
    "price_incl_vat",
    "manage_stock",
    "allow_negative_stock",
    "is_discontinued",
]


class ProductCreateSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")

    class Meta:
        model = Product
        fields = ["sku", "vendor", *_PRODUCT_WRITABLE]
        # Uniqueness is the service's answer (409 sku_exists), not a validation error.
        validators = []


class ProductUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = _PRODUCT_WRITABLE


class WarehouseSerializer(serializers.ModelSerializer):
    vendor = serializers.UUIDField(source="vendor_id", read_only=True)

    class Meta:
        model = Warehouse
        fields = [
            "code",
            "vendor",
            "name",
            "erp_id",
            "is_default",
            "is_main",
            "type",
            "active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WarehouseCreateSerializer(serializers.ModelSerializer):
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")

    class Meta:
        model = Warehouse
        fields = ["code", "vendor", "name", "erp_id", "is_default", "is_main", "type", "active"]
        validators = []
        extra_kwargs = {
            "is_default": {
                "help_text": "Make it the vendor's default (the vendor's first active "
                "warehouse becomes the default anyway)."
            }
        }


class WarehouseUpdateSerializer(serializers.Serializer):
    is_default = serializers.BooleanField(
        help_text="true: make this warehouse the vendor's default (the previous default stops "
        "being one). A vendor always keeps a default, so false is refused: make another "
        "warehouse the default instead."
    )

    def validate_is_default(self, value: bool) -> bool:
        if not value:
            raise serializers.ValidationError(
                "A vendor always has a default warehouse: make another warehouse the default "
                "instead."
            )
        return value


# --- Stock ----------------------------------------------------------------------------------


class StockLevelSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku", read_only=True)
    warehouse = serializers.CharField(source="warehouse.code", read_only=True)
    available = quantity_field(read_only=True)

    class Meta:
        model = StockLevel
        fields = [
            "sku",
            "warehouse",
            "on_hand",
            "reserved",
            "available",
            "ordered_quantity",
            "unit_cost",
            "stock_value",
            "min_stock",
            "max_stock",
            "last_synced_at",
            "updated_at",
        ]
        read_only_fields = fields


class StockSummarySerializer(serializers.Serializer):
    sku = serializers.CharField(source="product.sku")
    vendor = serializers.UUIDField(source="product.vendor_id")
    name = serializers.CharField(source="product.name")
    on_hand = quantity_field()
    reserved = quantity_field()
    available = quantity_field()
    ordered_quantity = quantity_field()
    warehouses = StockLevelSerializer(source="levels", many=True)


class StockMovementSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="level.product.sku", read_only=True)
    warehouse = serializers.CharField(source="level.warehouse.code", read_only=True)
    reservation = serializers.IntegerField(
        source="reservation_id",
        read_only=True,
        allow_null=True,
        help_text="The reservation this movement belongs to; null for other movements.",
    )

    class Meta:
        model = StockMovement
        fields = [
            "id",
            "sku",
            "warehouse",
            "kind",
            "on_hand_delta",
            "reserved_delta",
            "on_hand_after",
            "reserved_after",
            "unit_cost",
            "source",
            "reference",
            "reason",
            "actor",
            "correlation_id",
            "reservation",
            "created_at",
        ]
        read_only_fields = fields


class StockMutationSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")
    warehouse = serializers.CharField(max_length=50)
    type = serializers.ChoiceField(choices=MUTATION_TYPES)
    quantity = quantity_field(
        help_text="adjust: the change (negative removes); set: the counted quantity; "
        "transfer: the quantity moved."
    )
    to_warehouse = serializers.CharField(max_length=50, required=False, allow_blank=False)
    unit_cost = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        required=False,
        min_value=Decimal("0"),
        help_text="Cost per unit of stock received (adjust/set), for the average cost.",
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        if attrs["type"] == "transfer" and not attrs.get("to_warehouse"):
            raise serializers.ValidationError({"to_warehouse": ["Required for a transfer."]})
        if attrs["type"] != "transfer" and attrs.get("to_warehouse"):
            raise serializers.ValidationError({"to_warehouse": ["Only a transfer takes it."]})
        return attrs


class StockMutationResultSerializer(serializers.Serializer):
    movements = StockMovementSerializer(many=True)
    levels = StockLevelSerializer(many=True)


class StockMutationBatchSerializer(serializers.Serializer):
    rows = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=False,
        help_text=f"Up to {MAX_BATCH_ROWS} stock mutations (the single mutation's body).",
    )
    atomic = serializers.BooleanField(default=False, help_text="True: apply all rows or none.")


class StockMutationRowResultSerializer(BatchRowResultSerializer):
    status = status_choices(BATCH_ROW_STATUSES)
    details = serializers.DictField(required=False, help_text="An error row's details.")
    replayed = serializers.BooleanField(
        required=False, help_text="The ledger already held this row's operation."
    )
    movements = StockMovementSerializer(many=True, required=False)
    levels = StockLevelSerializer(many=True, required=False)


class StockMutationBatchResultSerializer(serializers.Serializer):
    atomic = serializers.BooleanField()
    counts = counts_field()
    results = StockMutationRowResultSerializer(many=True)


# --- Reservations ----------------------------------------------------------------------------


class ReservationCreateSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")
    warehouse = serializers.CharField(
        max_length=50, required=False, help_text="The vendor's default warehouse when omitted."
    )
    quantity = quantity_field(min_value=Decimal("0.001"))
    reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    # The service holds the rule (1 s to RESERVATION_MAX_TTL_SECONDS, `invalid_ttl`); these
    # bounds only keep the number readable as a duration (a timedelta overflows past ~1e13 s).
    ttl_seconds = serializers.IntegerField(
        required=False,
        min_value=-(2**31),
        max_value=2**31 - 1,
        help_text="How long the hold lasts, 1 to RESERVATION_MAX_TTL_SECONDS; "
        "RESERVATION_DEFAULT_TTL_SECONDS when omitted.",
    )


class ReservationSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="level.product.sku", read_only=True)
    warehouse = serializers.CharField(source="level.warehouse.code", read_only=True)

    class Meta:
        model = Reservation
        fields = [
            "id",
            "sku",
            "warehouse",
            "quantity",
            "reference",
            "owner",
            "status",
            "expires_at",
            "closed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ReservationActionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


# --- Hot-path representations ----------------------------------------------------------------
# The stock-level, summary and mutation answers are built by these plain functions (a DRF
# serializer instance costs about a millisecond to build). They produce exactly what the
# serializers above produce, which stay the documented contract; a test holds them equal.


def _quantity(value) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.001')):f}"


def _money(value) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.0001')):f}"


def _datetime(value) -> str | None:
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def level_data(level: StockLevel) -> dict:
    return {
        "sku": level.product.sku,
        "warehouse": level.warehouse.code,
        "on_hand": _quantity(level.on_hand),
        "reserved": _quantity(level.reserved),
        "available": _quantity(level.available),
        "ordered_quantity": _quantity(level.ordered_quantity),
        "unit_cost": _money(level.unit_cost),
        "stock_value": _money(level.stock_value),
        "min_stock": _quantity(level.min_stock),
        "max_stock": _quantity(level.max_stock),
        "last_synced_at": _datetime(level.last_synced_at),
        "updated_at": _datetime(level.updated_at),
    }


def movement_data(movement: StockMovement) -> dict:
    return {
        "id": movement.pk,
        "sku": movement.level.product.sku,
        "warehouse": movement.level.warehouse.code,
        "kind": movement.kind,
        "on_hand_delta": _quantity(movement.on_hand_delta),
        "reserved_delta": _quantity(movement.reserved_delta),
        "on_hand_after": _quantity(movement.on_hand_after),
        "reserved_after": _quantity(movement.reserved_after),
        "unit_cost": _money(movement.unit_cost),
        "source": movement.source,
        "reference": movement.reference,
        "reason": movement.reason,
        "actor": movement.actor,
        "correlation_id": movement.correlation_id,
        "reservation": movement.reservation_id,
        "created_at": _datetime(movement.created_at),
    }


def stock_summary_data(summary) -> dict:
    return {
        "sku": summary.product.sku,
        "vendor": str(summary.product.vendor_id),
        "name": summary.product.name,
        "on_hand": _quantity(summary.on_hand),
        "reserved": _quantity(summary.reserved),
        "available": _quantity(summary.available),
        "ordered_quantity": _quantity(summary.ordered_quantity),
        "warehouses": [level_data(level) for level in summary.levels],
    }


def mutation_data(mutation) -> dict:
    return {
        "movements": [movement_data(movement) for movement in mutation.movements],
        "levels": [level_data(level) for level in mutation.levels],
    }
