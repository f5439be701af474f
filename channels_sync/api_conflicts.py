"""The conflicts REST API (v1): list, detail with history, resolve.

Reads need the `read` scope; resolving needs `write`. A resolution goes through
`conflict_resolve`, which validates and writes; this module only translates.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from channels_sync.filters import ConflictFilter
from channels_sync.selectors_conflicts import conflict_get, conflict_list
from channels_sync.serializers_conflicts import (
    ConflictDetailSerializer,
    ConflictResolveSerializer,
    ConflictSerializer,
)
from channels_sync.services.conflict_resolution import conflict_resolve
from core.field_errors import service_errors
from core.idempotency import idempotent
from core.schema import error_responses, idempotency_header

_NOT_FOUND = {404: ["conflict_not_found"]}


@extend_schema_view(
    list=extend_schema(
        summary="List conflicts, newest first",
        description=(
            "Disagreements between our figures and a channel's: `stock_mismatch` (ours: the "
            "quantity last pushed; theirs: what the channel shows), `oversell` (ours: the "
            "available quantity after the sale; theirs: units sold past zero) and "
            "`duplicate_order` (one marketplace order id on two of a vendor's channels). "
            "Filter by kind, status, source, channel, listing, product, sku, reference and "
            "detection time."
        ),
        responses={
            200: ConflictSerializer(many=True),
            **error_responses({400: ["invalid_filter"]}),
        },
    ),
)
class ConflictViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = ConflictSerializer
    filterset_class = ConflictFilter

    def get_queryset(self):
        return conflict_list()

    @extend_schema(
        summary="A conflict with its history",
        responses={200: ConflictDetailSerializer, **error_responses(_NOT_FOUND)},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ConflictDetailSerializer(conflict_get(conflict_id=pk, history=True)).data)

    @extend_schema(
        summary="Resolve an open conflict with a strategy (scope write)",
        description=(
            "Strategies for a stock mismatch: `use_ours` (the channel is sent our quantity "
            "again), `use_theirs` (our stock moves by theirs - ours, with a ledger movement in "
            "one of the channel's warehouses), `minimum` (the lower of the two), `set_value` "
            "(`value` required: our stock moves by value - ours, then the channel is sent "
            "its new quantity), `last_write_wins` (the newer figure: an observation is always "
            "newer than our push, so in practice theirs), `source_priority` (theirs when the "
            "channel comes first by priority among the vendor's channels listing the "
            "product, else ours) and `ignore`. Moving our stock (`use_theirs`, `set_value`, "
            "and the others when they come down to theirs) is refused with 409 "
            "`conflict_stale` when the listing changed since the conflict was seen (reconcile "
            "it again), `erp_managed_stock` when the vendor's stock comes from its ERP, and "
            "`strategy_not_applicable` when the listing's allocation rule is not plain `all` "
            "(no buffer, maximum shown or zero-below); `use_ours` and `ignore` always apply. "
            "The resolved value is the quantity the channel is to show. An oversell takes "
            "`use_ours`, `set_value` (a stock count at the sold lines' warehouse) or `ignore`; "
            "a duplicate order `use_ours` (both orders stand) or `ignore`. The stock movement "
            "and the resolution commit together; pushes are queued after. An "
            "`Idempotency-Key` is optional; without one, a repeat answers 409 "
            "`conflict_not_open`."
        ),
        request=ConflictResolveSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            200: ConflictDetailSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "invalid_value",
                        "invalid_quantity",
                        "quantity_out_of_range",
                    ],
                    **_NOT_FOUND,
                    409: [
                        "conflict_not_open",
                        "strategy_not_applicable",
                        "conflict_stale",
                        "erp_managed_stock",
                        "insufficient_stock",
                        "no_channel_warehouse",
                        "warehouse_inactive",
                        "idempotency_key_in_progress",
                    ],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @action(detail=True, methods=["post"])
    @idempotent(required=False)
    def resolve(self, request: Request, pk: str) -> Response:
        conflict = conflict_get(conflict_id=pk)
        serializer = ConflictResolveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with service_errors():
            conflict_resolve(
                conflict_id=conflict.pk,
                strategy=data["strategy"],
                value=data.get("value"),
                note=data["note"],
                actor=request.user.actor,
            )
        return Response(
            ConflictDetailSerializer(conflict_get(conflict_id=conflict.pk, history=True)).data
        )
