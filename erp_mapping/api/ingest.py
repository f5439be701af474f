"""The agent ingest API: items, warehouses and stock pushed by a vendor's ERP agent.

Authenticated with the agent's token only; the vendor is the agent's. Each POST is also a
heartbeat. The answer is 200 with one result per row even when some rows are refused; 400
only when the body itself is unusable.
"""

from collections.abc import Callable

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.schema import error_responses
from erp_mapping.api.agents import AGENT_AUTH_ERRORS
from erp_mapping.auth import AgentThrottle, AgentTokenAuthentication
from erp_mapping.serializers.ingest import (
    IngestResultSerializer,
    IngestRowSerializer,
    ItemBatchSerializer,
    ItemRowSerializer,
    StockBatchSerializer,
    StockRowSerializer,
    WarehouseBatchSerializer,
    WarehouseRowSerializer,
    ingest_result_data,
    ingest_rows,
    ingest_rows_validate,
)
from erp_mapping.services.agents import agent_heartbeat
from erp_mapping.services.ingest import (
    IngestResult,
    erp_items_ingest,
    erp_stock_ingest,
    erp_warehouses_ingest,
)

_COMMON = (
    "Authenticated with the agent's token (`Authorization: Bearer ssa_...`); the vendor is the "
    'agent\'s. Body `{"rows": [...]}`, at most `ERP_INGEST_MAX_ROWS` (5,000) rows. Each row '
    "is validated on its own, then: same content hash as the one held -> `unchanged`; "
    "`updated_at` older than the one held -> `stale`; otherwise created or updated, "
    "set-based, in one transaction. Duplicate keys: the last row wins, earlier ones are "
    "`invalid` / `duplicate`. Answers 200 with `counts` per status and one result per row "
    "(in order: `index`, `key`, `status`, and `code` / `message` / `field` when refused), "
    "even when rows are refused; a batch over the maximum is refused whole (`batch_too_large`). "
    "A replayed batch is all `unchanged`. Counts as a heartbeat."
)
_ERRORS = error_responses(
    {400: ["invalid_body", "batch_too_large", "parse_error"], **AGENT_AUTH_ERRORS}
)


class _IngestView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    throttle_classes = [AgentThrottle]
    required_scopes = {"*": "agent"}
    row_serializer: type[IngestRowSerializer]
    ingest: Callable[..., IngestResult]

    def post(self, request: Request) -> Response:
        rows = ingest_rows(request.data)
        agent = agent_heartbeat(agent=request.auth)
        checked = ingest_rows_validate(self.row_serializer, rows)
        result = self.ingest(vendor_id=agent.vendor_id, rows=checked)
        return Response(ingest_result_data(result))


@extend_schema_view(
    post=extend_schema(
        summary="Ingest ERP items (products)",
        description=_COMMON
        + " Unit and VAT codes must map (an empty unit takes the vendor's fallback): "
        "otherwise `rejected` / `unmapped_unit` or `unmapped_vat`. Unmapped family and "
        "subfamily codes are stored empty. The VAT amount is price_incl_vat - price_excl_vat.",
        request=ItemBatchSerializer,
        responses={200: IngestResultSerializer, **_ERRORS},
    )
)
class ItemIngestView(_IngestView):
    row_serializer = ItemRowSerializer
    ingest = staticmethod(erp_items_ingest)


@extend_schema_view(
    post=extend_schema(
        summary="Ingest ERP warehouses",
        description=_COMMON
        + " A row with `is_default` moves the vendor's default warehouse to it (the last such "
        "row of a batch wins).",
        request=WarehouseBatchSerializer,
        responses={200: IngestResultSerializer, **_ERRORS},
    )
)
class WarehouseIngestView(_IngestView):
    row_serializer = WarehouseRowSerializer
    ingest = staticmethod(erp_warehouses_ingest)


@extend_schema_view(
    post=extend_schema(
        summary="Ingest ERP stock levels",
        description=_COMMON
        + " Rows name a SKU and warehouse code of the vendor: otherwise `rejected` / "
        "`unknown_sku`, `unknown_warehouse` or `warehouse_inactive`. Each level whose "
        "on_hand changes gets one `erp_sync` ledger movement. Optional fields left out keep "
        "their values; a null `min_stock` / `max_stock` clears it.",
        request=StockBatchSerializer,
        responses={200: IngestResultSerializer, **_ERRORS},
    )
)
class StockIngestView(_IngestView):
    row_serializer = StockRowSerializer
    ingest = staticmethod(erp_stock_ingest)
