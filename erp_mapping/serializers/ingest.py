"""Agent ingest at the edge: the batch envelope, one serializer per row kind, the answer.

A batch is `{"rows": [...]}` with at most `ERP_INGEST_MAX_ROWS` rows, in the envelope all
batch endpoints share (`core.batch`): a body that is not an object, or whose `rows` is not a
list, is refused whole (`invalid_body`), and so is an oversized one (`batch_too_large`).
Rows are then checked one by one: a bad row becomes an `InvalidRow` (reported `invalid` /
`invalid_row` with its first field error) and never stops the others.

One serializer instance validates every row of a batch (`run_validation` per row, as DRF's
own `ListSerializer` does): building a serializer copies its fields, which would cost more
than the validation itself over 5,000 rows.
"""

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.batch import (
    BatchRowResultSerializer,
    batch_answer,
    batch_rows,
    counts_field,
    row_result,
    status_choices,
)
from core.validators import SKU_INVALID_MESSAGE, sku_validate
from erp_mapping.services.ingest import STATUSES, IngestResult, InvalidRow
from inventory.models import Warehouse
from inventory.serializers import QuantityField
from inventory.services.stock import MAX_STOCK_VALUE


def _optional_code(**kwargs) -> serializers.CharField:
    return serializers.CharField(
        max_length=64, default="", allow_blank=True, allow_null=True, **kwargs
    )


def _quantity(**kwargs) -> QuantityField:
    return QuantityField(**kwargs)


# The ERP's warehouse type codes (ERP sync plan); agents send them as they are.
ERP_WAREHOUSE_TYPE_CODES = {"0": Warehouse.Type.STORAGE, "1": Warehouse.Type.TRANSIT}


def _money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=14, decimal_places=4, min_value=0, **kwargs)


class IngestRowSerializer(serializers.Serializer):
    """A row of one kind; `row_key` names it in the answer (its natural key)."""

    def row_key(self, row: Any) -> str:
        raise NotImplementedError

    @staticmethod
    def _text(row: Any, name: str) -> str:
        value = row.get(name) if isinstance(row, dict) else None
        return str(value).strip() if isinstance(value, str | int) else ""


class ItemRowSerializer(IngestRowSerializer):
    erp_id = serializers.CharField(max_length=100)
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    name = serializers.CharField(max_length=300)
    unit_code = _optional_code(help_text="ERP unit; empty or missing: the vendor's fallback unit.")
    vat_code = serializers.CharField(max_length=64)
    family_code = _optional_code()
    subfamily_code = _optional_code()
    price_excl_vat = _money()
    price_incl_vat = _money()
    barcode = serializers.CharField(max_length=64, default="", allow_blank=True, allow_null=True)
    manage_stock = serializers.BooleanField()
    allow_negative_stock = serializers.BooleanField()
    updated_at = serializers.DateTimeField(help_text="When the ERP last changed the item.")

    def validate(self, attrs: dict) -> dict:
        for name in ("unit_code", "family_code", "subfamily_code", "barcode"):
            attrs[name] = attrs.get(name) or ""
        if attrs["price_incl_vat"] < attrs["price_excl_vat"]:
            raise serializers.ValidationError(
                {"price_incl_vat": "Must not be below price_excl_vat."}
            )
        return attrs

    def row_key(self, row: Any) -> str:
        return self._text(row, "sku")


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": [*Warehouse.Type.values, *ERP_WAREHOUSE_TYPE_CODES]},
            {"type": "integer", "enum": [int(code) for code in ERP_WAREHOUSE_TYPE_CODES]},
        ]
    }
)
class ErpWarehouseTypeField(serializers.ChoiceField):
    """A warehouse type as the ERP sends it: its name, or its integer code (0, 1, "0", "1")."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=Warehouse.Type.choices, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        if isinstance(data, str):
            data = ERP_WAREHOUSE_TYPE_CODES.get(data, data)
        return super().to_internal_value(data)


class WarehouseRowSerializer(IngestRowSerializer):
    erp_id = serializers.CharField(max_length=100)
    code = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=200)
    is_main = serializers.BooleanField()
    is_default = serializers.BooleanField()
    type = ErpWarehouseTypeField(
        help_text="`storage` or `transit`, or the ERP's code: 0 (storage) or 1 (transit)."
    )
    updated_at = serializers.DateTimeField(help_text="When the ERP last changed the warehouse.")

    def row_key(self, row: Any) -> str:
        return self._text(row, "code")


class StockRowSerializer(IngestRowSerializer):
    sku = serializers.CharField(max_length=100, validators=[sku_validate])
    warehouse_code = serializers.CharField(max_length=50)
    quantity = _quantity(help_text="On hand, as the ERP counts it.")
    ordered_quantity = _quantity(required=False, help_text="Missing: left as it is.")
    unit_cost = _money(required=False, help_text="Missing: left as it is.")
    min_stock = _quantity(
        required=False, allow_null=True, min_value=0, help_text="Missing: kept; null: cleared."
    )
    max_stock = _quantity(
        required=False, allow_null=True, min_value=0, help_text="Missing: kept; null: cleared."
    )
    updated_at = serializers.DateTimeField(help_text="When the ERP last counted this stock.")

    def validate(self, attrs: dict) -> dict:
        low, high = attrs.get("min_stock"), attrs.get("max_stock")
        if low is not None and high is not None and high < low:
            raise serializers.ValidationError({"max_stock": "Must not be below min_stock."})
        cost = attrs.get("unit_cost")
        if cost is not None and abs(attrs["quantity"] * cost) > MAX_STOCK_VALUE:
            raise serializers.ValidationError({"quantity": "Its stock value is out of range."})
        return attrs

    def row_key(self, row: Any) -> str:
        return f"{self._text(row, 'sku')}@{self._text(row, 'warehouse_code')}"


def _first_field(detail: Any) -> str:
    if isinstance(detail, dict):
        for name in detail:
            return "" if name == "non_field_errors" else str(name)
    return ""


def _first_error(detail: Any) -> str:
    if isinstance(detail, dict):
        for name, value in detail.items():
            inner = _first_error(value)
            return inner if name == "non_field_errors" else f"{name}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_error(detail[0])
    return str(detail)


def ingest_rows(data: Any) -> list:
    """The rows of a batch body, or raise 400 `invalid_body` / `batch_too_large`."""
    return batch_rows(data, limit=settings.ERP_INGEST_MAX_ROWS)


def ingest_rows_validate(
    serializer_class: type[IngestRowSerializer], rows: Sequence[Any]
) -> list[dict | InvalidRow]:
    """Validate each row: its validated data, or an `InvalidRow` with its first field error."""
    serializer = serializer_class()
    checked: list[dict | InvalidRow] = []
    for row in rows:
        if not isinstance(row, dict):
            checked.append(InvalidRow(key="", message="A row must be a JSON object."))
            continue
        try:
            checked.append(serializer.run_validation(row))
        except serializers.ValidationError as exc:
            checked.append(_invalid_row(serializer.row_key(row), exc))
    return checked


def _invalid_row(key: str, exc: serializers.ValidationError) -> InvalidRow:
    # A SKU that could never be reached again gets its own code, so agents can tell it apart.
    codes = exc.get_codes()
    if isinstance(codes, dict) and "invalid_sku" in codes.get("sku", []):
        return InvalidRow(
            key=key, message=f"sku: {SKU_INVALID_MESSAGE}", code="invalid_sku", field="sku"
        )
    return InvalidRow(key=key, message=_first_error(exc.detail), field=_first_field(exc.detail))


# --- Documentation of the bodies and the answer --------------------------------------------


class ItemBatchSerializer(serializers.Serializer):
    rows = ItemRowSerializer(many=True)


class WarehouseBatchSerializer(serializers.Serializer):
    rows = WarehouseRowSerializer(many=True)


class StockBatchSerializer(serializers.Serializer):
    rows = StockRowSerializer(many=True)


# The row field behind each refusal the services decide (the edge knows the field names).
_CODE_FIELDS = {
    "unmapped_unit": "unit_code",
    "unmapped_vat": "vat_code",
    "unknown_sku": "sku",
    "unknown_warehouse": "warehouse_code",
    "warehouse_inactive": "warehouse_code",
    "quantity_out_of_range": "quantity",
}


class IngestRowResultSerializer(BatchRowResultSerializer):
    status = status_choices(STATUSES)
    code = serializers.CharField(
        allow_blank=True,
        help_text="Why a row was rejected or invalid: `unmapped_unit`, `unmapped_vat`, "
        "`unknown_sku`, `unknown_warehouse`, `invalid_row`, `invalid_sku`, `duplicate`; empty "
        "otherwise.",
    )
    key = serializers.CharField(
        help_text="The row's natural key: item `sku`, warehouse `code`, stock `sku@warehouse_code`."
    )


class IngestResultSerializer(serializers.Serializer):
    counts = counts_field()
    results = IngestRowResultSerializer(many=True, help_text="One result per row, in order.")


def ingest_result_data(result: IngestResult) -> dict:
    return batch_answer(
        [
            row_result(
                index,
                r.status,
                code=r.code,
                message=r.message,
                field=r.field or _CODE_FIELDS.get(r.code, ""),
                key=r.key,
            )
            for index, r in enumerate(result.results)
        ],
        STATUSES,
    )
