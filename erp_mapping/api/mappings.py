"""The ERP code mapping API: list (scope `read`) and seed (scope `admin`)."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.batch import batch_size_check
from core.errors import DomainError
from core.idempotency import idempotent
from core.schema import error_responses, idempotency_header
from erp_mapping.filters import ErpCodeMappingFilter
from erp_mapping.models import ErpCodeMapping
from erp_mapping.serializers.mappings import (
    MAX_SEED_ROWS,
    ErpCodeMappingSerializer,
    MappingSeedSerializer,
    SeedResultSerializer,
    mapping_rows_parse,
    seed_result_data,
)
from erp_mapping.services.mappings import mappings_seed


class MappingListView(generics.ListAPIView):
    serializer_class = ErpCodeMappingSerializer
    filterset_class = ErpCodeMappingFilter

    def get_queryset(self):
        # Unique per (vendor, type, code), so this order pages stably.
        return ErpCodeMapping.objects.order_by("vendor_id", "mapping_type", "erp_code")

    @extend_schema(
        summary="List ERP code mappings (every vendor unless `vendor` is given)",
        responses={
            200: ErpCodeMappingSerializer(many=True),
            **error_responses(),
        },
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class MappingSeedView(APIView):
    required_scopes = {"POST": "admin"}

    @extend_schema(
        summary="Seed a vendor's ERP code mappings (upsert)",
        description=(
            "Validates each row on its own and upserts the good ones; answers 200 with the "
            "created / updated / unchanged / skipped / invalid counts per type and the invalid "
            "rows (index, status `invalid`, code, message, field: the batch row shape). Over "
            f"{MAX_SEED_ROWS:,} mappings: 400 `batch_too_large`. Row codes: `invalid_row`, "
            "`missing_type`, `unknown_type`, `missing_code`, `missing_label`, `too_long`, "
            "`invalid_value`, `duplicate`. A unit row with an empty `erp_code` is the vendor's "
            "fallback unit, "
            'skipped unless `"include_empty": true`. A second identical seed changes nothing; '
            '`"dry_run": true` writes nothing. An unknown `vendor_id` is created. Needs the '
            "`admin` scope."
        ),
        request=MappingSeedSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            200: SeedResultSerializer,
            **error_responses(
                {
                    400: ["invalid_body", "validation_error", "batch_too_large", "parse_error"],
                    409: ["idempotency_key_in_progress"],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False)
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise DomainError("The body must be a JSON object.", code="invalid_body")
        batch_size_check(request.data.get("mappings"), limit=MAX_SEED_ROWS)
        envelope = MappingSeedSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        data = envelope.validated_data
        rows, invalid = mapping_rows_parse(data["mappings"], vendor_id=data["vendor_id"])
        result = mappings_seed(
            rows=rows,
            invalid=invalid,
            include_empty=data["include_empty"],
            dry_run=data["dry_run"],
            actor=request.user.actor,
        )
        return Response(seed_result_data(result))
