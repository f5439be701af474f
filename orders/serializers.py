"""Serializers of the orders API: input validated at the edge, representations out."""

from decimal import Decimal

from rest_framework import serializers

from core.validators import sku_validate
from inventory.serializers import quantity_field
from orders.models import Order, OrderEvent, OrderLine

MAX_ORDER_LINES = 500


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=14, decimal_places=4, required=False, allow_null=True, **kwargs
    )


class OrderLineCreateSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    quantity = quantity_field(min_value=Decimal("0.001"))
    warehouse = serializers.CharField(
        max_length=50, required=False, help_text="The vendor's default warehouse when omitted."
    )
    unit_price = _money(min_value=Decimal("0"))
    discount = _money(min_value=Decimal("0"))
    vat_rate = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        required=False,
        allow_null=True,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        help_text="Percent.",
    )
    vat_amount = _money(min_value=Decimal("0"))
    name = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")


class OrderCreateSerializer(serializers.Serializer):
    order_number = serializers.CharField(max_length=100)
    vendor = serializers.UUIDField(required=False, help_text="Default vendor when omitted.")
    lines = OrderLineCreateSerializer(many=True, allow_empty=False, max_length=MAX_ORDER_LINES)
    customer = serializers.DictField(required=False, default=dict)
    address = serializers.DictField(required=False, default=dict)
    notes = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    amount = _money(min_value=Decimal("0"))
    currency = serializers.RegexField(r"^[A-Z]{3}$", required=False, allow_blank=True, default="")
    payment_method = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    placed_at = serializers.DateTimeField(required=False, allow_null=True)


class OrderActionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class OrderLineSerializer(serializers.ModelSerializer):
    product_sku = serializers.CharField(source="product.sku", read_only=True, allow_null=True)
    warehouse = serializers.CharField(source="warehouse.code", read_only=True, allow_null=True)
    reservation = serializers.IntegerField(source="reservation_id", read_only=True, allow_null=True)

    class Meta:
        model = OrderLine
        fields = [
            "line_number",
            "sku",
            "product_sku",
            "keys",
            "name",
            "quantity",
            "unit_price",
            "discount",
            "vat_rate",
            "vat_amount",
            "warehouse",
            "reservation",
            "status",
            "restocked_quantity",
            "restocked_at",
        ]
        read_only_fields = fields


class OrderEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = [
            "id",
            "kind",
            "from_status",
            "to_status",
            "raw_status",
            "source",
            "actor",
            "event_ref",
            "source_updated_at",
            "message",
            "details",
            "correlation_id",
            "created_at",
        ]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    vendor = serializers.UUIDField(source="vendor_id", read_only=True)
    channel = serializers.IntegerField(source="channel_id", read_only=True, allow_null=True)
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "vendor",
            "channel",
            "external_id",
            "order_number",
            "status",
            "raw_status",
            "needs_mapping",
            "placed_at",
            "paid_at",
            "source_updated_at",
            "confirmed_at",
            "customer",
            "address",
            "amount",
            "currency",
            "payment_method",
            "erp_reference",
            "erp_status",
            "erp_document_id",
            "erp_synced_at",
            "erp_sync_error",
            "notes",
            "lines",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderDetailSerializer(OrderSerializer):
    events = OrderEventSerializer(many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "events"]
        read_only_fields = fields
