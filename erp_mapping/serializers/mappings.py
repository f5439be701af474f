"""ERP code mappings at the edge: the list's rows, seed rows (API and Convex export), results.

A seed row is checked on its own: a bad row becomes a `RowError` (position, field, code,
message) and never stops the others. The codes are stable: `invalid_row` (not an object),
`invalid_vendor_id`, `missing_type`, `unknown_type`, `missing_code`, `missing_label`,
`too_long`, `invalid_value`; the seed service adds `missing_code` (an empty ERP code on a
type other than unit) and `duplicate`.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.batch import BatchRowResultSerializer, row_result, status_choices
from erp_mapping.models import ErpCodeMapping
from erp_mapping.services.mappings import MappingInput, RowError, SeedResult

MAX_SEED_ROWS = 10_000

# The legacy Convex export is camelCase; everything else is snake_case. Its own fields
# (`_id`, `_creationTime`, `createdAt`, `updatedAt`) and any others are dropped.
CONVEX_FIELDS = {
    "vendorId": "vendor_id",
    "mappingType": "mapping_type",
    "erpCode": "erp_code",
    "restoCode": "resto_code",
    "restoLabel": "resto_label",
    "isActive": "is_active",
}


class ErpCodeMappingSerializer(serializers.ModelSerializer):
    vendor_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = ErpCodeMapping
        fields = [
            "id",
            "vendor_id",
            "mapping_type",
            "erp_code",
            "resto_code",
            "resto_label",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MappingRowSerializer(serializers.Serializer):
    """One mapping of a seed."""

    mapping_type = serializers.ChoiceField(choices=ErpCodeMapping.Type.choices)
    erp_code = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        help_text="Empty only for a unit: the vendor's fallback unit (see `include_empty`).",
    )
    resto_code = serializers.CharField(max_length=100, help_text="The internal code.")
    resto_label = serializers.CharField(max_length=200)
    is_active = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Omitted: a new mapping is active, an existing one keeps its state.",
    )


class MappingFileRowSerializer(MappingRowSerializer):
    """A row of an export file, which names its vendor."""

    vendor_id = serializers.UUIDField()


_CHECK_ORDER = ["vendor_id", "mapping_type", "erp_code", "resto_code", "resto_label", "is_active"]
_MISSING = {"required", "null", "blank"}
_MISSING_CODES = {
    "mapping_type": "missing_type",
    "erp_code": "missing_code",
    "resto_code": "missing_code",
    "resto_label": "missing_label",
}


def _row_error(index: int, raw: dict, errors: dict) -> RowError:
    """The first failing field of a row (in a fixed order), as a stable code."""
    name = next(name for name in [*_CHECK_ORDER, *errors] if name in errors)
    detail = errors[name][0] if isinstance(errors[name], list) else errors[name]
    drf_code = getattr(detail, "code", "invalid")
    value = raw.get(name)
    if name == "vendor_id":
        code = "invalid_vendor_id"
    elif name == "mapping_type" and drf_code == "invalid_choice" and value in ("", None):
        code = "missing_type"
    elif name == "mapping_type" and drf_code == "invalid_choice":
        code = "unknown_type"
    elif drf_code in _MISSING and name in _MISSING_CODES:
        code = _MISSING_CODES[name]
    elif drf_code == "max_length":
        code = "too_long"
    else:
        code = "invalid_value"
    mapping_type = raw.get("mapping_type")
    known = mapping_type if mapping_type in ErpCodeMapping.Type.values else ""
    return RowError(index, name, code, str(detail), known)


def _as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def mapping_rows_parse(
    raw_rows: Sequence[Any],
    *,
    vendor_id: uuid.UUID | None = None,
    only_vendor: uuid.UUID | None = None,
) -> tuple[list[MappingInput], list[RowError]]:
    """Check each raw (snake_case) row on its own; return the good rows and the bad ones.

    With `vendor_id` every row belongs to that vendor (the API); without, each row names its
    own (`vendor_id`, the export file), and `only_vendor` ignores the rows of other vendors
    (rows that name none or a malformed one included). Positions are indexes into `raw_rows`.
    """
    # One serializer checks every row (as a ListSerializer does): building one per row
    # costs more than the checks themselves.
    row_serializer = (MappingRowSerializer if vendor_id else MappingFileRowSerializer)()
    rows: list[MappingInput] = []
    errors: list[RowError] = []
    for index, raw in enumerate(raw_rows):
        if only_vendor and not (
            isinstance(raw, dict) and _as_uuid(raw.get("vendor_id")) == only_vendor
        ):
            continue
        if not isinstance(raw, dict):
            errors.append(RowError(index, "row", "invalid_row", "A row must be an object."))
            continue
        try:
            data = row_serializer.run_validation(raw)
        except serializers.ValidationError as exc:
            errors.append(_row_error(index, raw, exc.detail))
            continue
        rows.append(
            MappingInput(
                index=index,
                vendor_id=vendor_id or data["vendor_id"],
                mapping_type=data["mapping_type"],
                erp_code=data["erp_code"] or "",
                resto_code=data["resto_code"],
                resto_label=data["resto_label"],
                is_active=data["is_active"],
            )
        )
    return rows, errors


def convex_rows_convert(raw_rows: Sequence[Any]) -> list[Any]:
    """Rename a Convex export's rows to snake_case, dropping Convex-only fields.

    Rows that are not objects are kept as they are (the row check reports them).
    """
    return [
        {CONVEX_FIELDS[name]: value for name, value in raw.items() if name in CONVEX_FIELDS}
        if isinstance(raw, dict)
        else raw
        for raw in raw_rows
    ]


@extend_schema_field(MappingRowSerializer(many=True))
class MappingRowsField(serializers.ListField):
    """The rows, each checked on its own later (a bad row does not fail the body)."""


class MappingSeedSerializer(serializers.Serializer):
    vendor_id = serializers.UUIDField(help_text="Created when not known yet.")
    mappings = MappingRowsField(
        help_text=(
            f"Up to {MAX_SEED_ROWS:,} mappings. Of rows with the same type and ERP code the "
            "last wins; the earlier ones are reported as `duplicate`."
        )
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="Compute the same counts and write nothing."
    )
    include_empty = serializers.BooleanField(
        default=False,
        help_text="Import a unit row with an empty ERP code as the vendor's fallback unit "
        "(skipped otherwise).",
    )


class SeedCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    skipped = serializers.IntegerField()
    invalid = serializers.IntegerField()


class SeedVendorSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    created = serializers.BooleanField(help_text="Created by this seed (or would be, dry run).")


class RowErrorSerializer(BatchRowResultSerializer):
    status = status_choices(["invalid"])


class SeedResultSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    vendors = SeedVendorSerializer(many=True)
    counts = serializers.DictField(
        child=SeedCountsSerializer(), help_text="Per mapping type: unit, vat, family, subfamily."
    )
    totals = SeedCountsSerializer(help_text="All types (invalid rows of unknown type included).")
    invalid = RowErrorSerializer(
        many=True, help_text="The refused rows, in order (the batch row shape, status invalid)."
    )


def seed_result_data(result: SeedResult) -> dict:
    """The answer of a seed, as the API sends it."""
    return {
        "dry_run": result.dry_run,
        "vendors": [
            {"id": str(vendor.id), "name": vendor.name, "created": vendor.created}
            for vendor in result.vendors
        ],
        "counts": {name: counts.as_dict() for name, counts in result.by_type.items()},
        "totals": result.totals.as_dict(),
        "invalid": [
            row_result(
                error.index, "invalid", code=error.code, message=error.message, field=error.field
            )
            for error in result.invalid
        ],
    }
