"""The inventory REST API (v1): catalogue, stock levels, mutations, reservations, ledger.

Views validate input with serializers, look things up with selectors and change state only
through services. Reads need the `read` scope, writes `write`.
"""

import hashlib
import uuid
from datetime import timedelta

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from core.batch import batch_answer, batch_size_check, row_result
from core.errors import DomainError
from core.field_errors import error_field, service_errors
from core.idempotency import REPLAY_HEADER, idempotent
from core.pagination import LedgerCursorPagination
from core.schema import error_responses, idempotency_header
from inventory import selectors, services
from inventory.errors import ReservationNotFound
from inventory.filters import (
    ProductFilter,
    ReservationFilter,
    StockLevelFilter,
    StockMovementFilter,
    WarehouseFilter,
)
from inventory.models import Product, Warehouse
from inventory.serializers import (
    MAX_BATCH_ROWS,
    ProductCreateSerializer,
    ProductSerializer,
    ProductUpdateSerializer,
    ReservationActionSerializer,
    ReservationCreateSerializer,
    ReservationSerializer,
    StockLevelSerializer,
    StockMovementSerializer,
    StockMutationBatchResultSerializer,
    StockMutationBatchSerializer,
    StockMutationResultSerializer,
    StockMutationSerializer,
    StockSummarySerializer,
    WarehouseCreateSerializer,
    WarehouseSerializer,
    WarehouseUpdateSerializer,
    mutation_data,
    stock_summary_data,
)
from inventory.services import MutationRequest, Origin

VENDOR_PARAM = OpenApiParameter(
    "vendor", OpenApiTypes.UUID, description="The vendor; the default vendor when omitted."
)


def _origin(request: Request, *, reason: str = "", reference: str = "") -> Origin:
    return Origin(source="api", actor=request.user.actor, reason=reason, reference=reference)


def _service_key(request: Request, *scope: str | int) -> str:
    """The ledger's idempotency key for this request, in a scope (a batch row, ...).

    A digest of the caller's key, so that no key a caller may send (they may contain `:`)
    can collide with another key; each endpoint keeps its own scope.
    """
    if not request.idempotency_key:
        return ""
    digest = hashlib.sha256(request.idempotency_key.encode("utf-8")).hexdigest()
    return ":".join(["api", request.user.owner, digest, *map(str, scope)])


class _Resolver:
    """Resolve the SKUs and warehouse codes of a request's rows, each at most once."""

    def __init__(self) -> None:
        self._products: dict[tuple[str, str], Product] = {}
        self._warehouses: dict[tuple[uuid.UUID, str], Warehouse] = {}

    @staticmethod
    def _product_key(vendor_id: uuid.UUID | str | None, sku: str) -> tuple[str, str]:
        return (str(vendor_id or ""), sku)

    def prefetch(self, rows: list[dict]) -> None:
        """Load the products and warehouses of many rows in a few queries."""
        by_vendor: dict[str, set[str]] = {}
        for row in rows:
            vendor_key, sku = self._product_key(row.get("vendor"), str(row.get("sku")))
            by_vendor.setdefault(vendor_key, set()).add(sku)
        for vendor_key, skus in by_vendor.items():
            try:
                vendor = selectors.vendor_get(vendor_key or None)
            except DomainError:
                continue  # reported per row
            for product in Product.objects.filter(vendor=vendor, sku__in=skus):
                self._products[self._product_key(vendor_key, product.sku)] = product
            for warehouse in Warehouse.objects.filter(vendor=vendor):
                self._warehouses[(vendor.pk, warehouse.code)] = warehouse

    def product(self, vendor_id: uuid.UUID | None, sku: str) -> Product:
        key = self._product_key(vendor_id, sku)
        if key not in self._products:
            self._products[key] = selectors.product_get(sku=sku, vendor_id=vendor_id)
        return self._products[key]

    def warehouse(self, vendor_id: uuid.UUID, code: str) -> Warehouse:
        if (vendor_id, code) not in self._warehouses:
            self._warehouses[(vendor_id, code)] = selectors.warehouse_get(
                code=code, vendor_id=vendor_id
            )
        return self._warehouses[(vendor_id, code)]

    def _through_level(self, vendor_id: uuid.UUID | None, sku: str, code: str) -> None:
        # The product and warehouse of an existing level come in one query.
        key = self._product_key(vendor_id, sku)
        if key in self._products:
            return
        level = selectors.stock_level_find(sku=sku, warehouse_code=code, vendor_id=vendor_id)
        if level is not None:
            self._products[key] = level.product
            self._warehouses[(level.product.vendor_id, code)] = level.warehouse

    def mutation(self, request: Request, data: dict, *, key: str) -> MutationRequest:
        self._through_level(data.get("vendor"), data["sku"], data["warehouse"])
        product = self.product(data.get("vendor"), data["sku"])
        to_code = data.get("to_warehouse")
        return MutationRequest(
            kind=data["type"],
            product=product,
            warehouse=self.warehouse(product.vendor_id, data["warehouse"]),
            to_warehouse=self.warehouse(product.vendor_id, to_code) if to_code else None,
            quantity=data["quantity"],
            unit_cost=data.get("unit_cost"),
            origin=_origin(request, reason=data["reason"], reference=data["reference"]),
            idempotency_key=key,
        )


# --- Catalogue ----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="List products", responses={200: ProductSerializer(many=True)}),
)
class ProductViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    lookup_field = "sku"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return selectors.product_list()

    @extend_schema(
        summary="Create a product",
        request=ProductCreateSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            201: ProductSerializer,
            **error_responses(
                {
                    400: ["validation_error"],
                    404: ["vendor_not_found"],
                    409: ["sku_exists", "idempotency_key_in_progress"],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False)
    def create(self, request: Request) -> Response:
        serializer = ProductCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        vendor = selectors.vendor_get(data.pop("vendor", None))
        product = services.product_create(vendor=vendor, **data)
        return Response(ProductSerializer(product).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Get a product by SKU",
        parameters=[VENDOR_PARAM],
        responses={200: ProductSerializer, **error_responses({404: ["product_not_found"]})},
    )
    def retrieve(self, request: Request, sku: str) -> Response:
        product = selectors.product_get(sku=sku, vendor_id=request.query_params.get("vendor"))
        return Response(ProductSerializer(product).data)

    @extend_schema(
        summary="Change a product's catalogue fields",
        parameters=[VENDOR_PARAM],
        request=ProductUpdateSerializer,
        responses={
            200: ProductSerializer,
            **error_responses({400: ["validation_error"], 404: ["product_not_found"]}),
        },
    )
    def partial_update(self, request: Request, sku: str) -> Response:
        product = selectors.product_get(sku=sku, vendor_id=request.query_params.get("vendor"))
        serializer = ProductUpdateSerializer(product, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        product = services.product_update(product=product, **serializer.validated_data)
        return Response(ProductSerializer(product).data)


@extend_schema_view(
    list=extend_schema(
        summary="List warehouses",
        responses={200: WarehouseSerializer(many=True)},
    ),
)
class WarehouseViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = WarehouseSerializer
    filterset_class = WarehouseFilter
    lookup_field = "code"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return selectors.warehouse_list()

    @extend_schema(
        summary="Create a warehouse",
        request=WarehouseCreateSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            201: WarehouseSerializer,
            **error_responses(
                {
                    400: ["validation_error"],
                    404: ["vendor_not_found"],
                    409: ["warehouse_exists", "warehouse_inactive", "idempotency_key_in_progress"],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False)
    def create(self, request: Request) -> Response:
        serializer = WarehouseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        vendor = selectors.vendor_get(data.pop("vendor", None))
        warehouse = services.warehouse_create(vendor=vendor, **data)
        return Response(WarehouseSerializer(warehouse).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Make a warehouse the vendor's default",
        description="The default warehouse is the one reservations (and ERP pull rows) use "
        "when they name none. A vendor's first active warehouse becomes its default; "
        '`{"is_default": true}` moves the default here.',
        parameters=[VENDOR_PARAM],
        request=WarehouseUpdateSerializer,
        responses={
            200: WarehouseSerializer,
            **error_responses(
                {
                    400: ["validation_error"],
                    404: ["warehouse_not_found", "vendor_not_found"],
                    409: ["warehouse_inactive"],
                }
            ),
        },
    )
    def partial_update(self, request: Request, code: str) -> Response:
        vendor = selectors.vendor_get(request.query_params.get("vendor"))
        warehouse = selectors.warehouse_get(code=code, vendor_id=vendor.pk)
        serializer = WarehouseUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        warehouse = services.warehouse_default_set(warehouse=warehouse)
        return Response(WarehouseSerializer(warehouse).data)


# --- Stock ----------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="List stock levels", responses={200: StockLevelSerializer(many=True)}
    ),
)
class StockLevelViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = StockLevelSerializer
    filterset_class = StockLevelFilter
    lookup_field = "sku"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return selectors.stock_level_list().order_by("product__sku", "warehouse__code")

    @extend_schema(
        summary="A product's stock: totals and one row per warehouse",
        parameters=[VENDOR_PARAM],
        responses={200: StockSummarySerializer, **error_responses({404: ["product_not_found"]})},
    )
    def retrieve(self, request: Request, sku: str) -> Response:
        summary = selectors.stock_summary(sku=sku, vendor_id=request.query_params.get("vendor"))
        return Response(stock_summary_data(summary))


_MUTATION_ERRORS = {
    400: [
        "validation_error",
        "idempotency_key_required",
        "invalid_quantity",
        "quantity_out_of_range",
        "same_warehouse",
        "vendor_mismatch",
    ],
    404: ["product_not_found", "warehouse_not_found", "vendor_not_found"],
    409: ["insufficient_stock", "warehouse_inactive", "idempotency_key_in_progress"],
    422: ["idempotency_key_reused"],
}


class StockMutationView(APIView):
    @extend_schema(
        summary="Adjust, set (count) or transfer stock",
        description=(
            "Writes one ledger movement per level changed and answers 201 with the movements "
            "and the resulting levels. Requires an `Idempotency-Key`. A key older than the "
            "24-hour replay window whose operation the ledger already holds answers 200 with "
            "`Idempotent-Replayed: true` and the movements it wrote then."
        ),
        request=StockMutationSerializer,
        parameters=[idempotency_header(required=True)],
        responses={
            201: StockMutationResultSerializer,
            200: StockMutationResultSerializer,
            **error_responses(_MUTATION_ERRORS),
        },
    )
    @idempotent(required=True)
    def post(self, request: Request) -> Response:
        serializer = StockMutationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        resolver = _Resolver()
        mutation = resolver.mutation(
            request, serializer.validated_data, key=_service_key(request, "mutation")
        )
        result = services.stock_mutate(mutation)
        if result.replayed:
            # The ledger already holds this operation (its HTTP record had expired).
            return Response(mutation_data(result), headers={REPLAY_HEADER: "true"})
        return Response(mutation_data(result), status=status.HTTP_201_CREATED)


class StockMutationBatchView(APIView):
    @extend_schema(
        summary="Apply up to 1,000 stock mutations under one Idempotency-Key",
        description=(
            "Each row is the body of a single mutation. Answers 200 with one result per row "
            "(`ok` with its movements, or `error` with a code); invalid rows never stop valid "
            'ones. With `"atomic": true` all rows apply or none: a failing row answers 422 '
            "`batch_rejected` with the per-row results in `details.results`."
        ),
        request=StockMutationBatchSerializer,
        parameters=[idempotency_header(required=True)],
        responses={
            200: StockMutationBatchResultSerializer,
            **error_responses(
                {
                    400: ["validation_error", "batch_too_large", "idempotency_key_required"],
                    409: ["idempotency_key_in_progress"],
                    422: ["batch_rejected", "idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=True)
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict):
            batch_size_check(request.data.get("rows"), limit=MAX_BATCH_ROWS)
        envelope = StockMutationBatchSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        rows, atomic = envelope.validated_data["rows"], envelope.validated_data["atomic"]
        resolver = _Resolver()
        resolver.prefetch(rows)
        requests: list[MutationRequest | DomainError] = []
        for index, row in enumerate(rows):
            serializer = StockMutationSerializer(data=row)
            if not serializer.is_valid():
                requests.append(
                    DomainError("Invalid row.", code="validation_error", details=serializer.errors)
                )
                continue
            try:
                requests.append(
                    resolver.mutation(
                        request, serializer.validated_data, key=_service_key(request, "row", index)
                    )
                )
            except DomainError as exc:
                requests.append(exc)
        try:
            results = services.stock_mutate_batch(rows=requests, atomic=atomic)
        except services.BatchRejected as exc:
            raise DomainError(
                exc.message,
                code=exc.code,
                status_code=exc.status_code,
                details={"results": _batch_results(exc.results, rolled_back=True)},
            ) from exc
        body = _batch_results(results, rolled_back=False)
        return Response(batch_answer(body, ("ok", "error"), atomic=atomic))


def _batch_results(results: list, *, rolled_back: bool) -> list[dict]:
    body = []
    for index, result in enumerate(results):
        if isinstance(result, DomainError):
            body.append(
                row_result(
                    index,
                    "error",
                    code=result.code,
                    message=result.message,
                    field=_error_field(result),
                    details=result.details,
                )
            )
        elif rolled_back:
            body.append(row_result(index, "rolled_back"))
        else:
            body.append(row_result(index, "ok", replayed=result.replayed, **mutation_data(result)))
    return body


def _error_field(error: DomainError) -> str:
    """The row field a refusal names: a service's `field`, or an invalid row's first field."""
    if error.code == "validation_error":
        name = next(iter(error.details), "")
        return "" if name == "non_field_errors" else name
    return error_field(error) or ""


@extend_schema_view(
    list=extend_schema(
        summary="The ledger: stock movements, newest first (cursor pagination)",
        responses={200: StockMovementSerializer(many=True)},
    ),
)
class StockMovementViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = StockMovementSerializer
    filterset_class = StockMovementFilter
    pagination_class = LedgerCursorPagination

    def get_queryset(self):
        return selectors.movement_list()


# --- Reservations -----------------------------------------------------------------------------

_RESERVATION_ACTION_ERRORS = error_responses(
    {404: ["reservation_not_found"], 409: ["reservation_not_active", "reservation_owned_by_order"]}
)


@extend_schema_view(
    list=extend_schema(
        summary="List reservations", responses={200: ReservationSerializer(many=True)}
    ),
    retrieve=extend_schema(
        summary="Get a reservation",
        responses={200: ReservationSerializer, **error_responses({404: ["reservation_not_found"]})},
    ),
)
class ReservationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    serializer_class = ReservationSerializer
    filterset_class = ReservationFilter

    def get_queryset(self):
        return selectors.reservation_list()

    def get_object(self):
        try:
            reservation_id = int(self.kwargs["pk"])
        except ValueError as exc:
            raise ReservationNotFound(details={"id": self.kwargs["pk"]}) from exc
        return selectors.reservation_get(reservation_id=reservation_id)

    @extend_schema(
        summary="Reserve stock for an order line",
        description=(
            "Answers 201 with the new reservation, or 409 `insufficient_stock`. With an "
            "`Idempotency-Key` older than the 24-hour replay window whose reservation exists, "
            "200 with `Idempotent-Replayed: true` and that reservation as it stands."
        ),
        request=ReservationCreateSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            201: ReservationSerializer,
            200: ReservationSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "invalid_quantity",
                        "invalid_ttl",
                        "vendor_mismatch",
                    ],
                    404: ["product_not_found", "warehouse_not_found", "vendor_not_found"],
                    409: [
                        "insufficient_stock",
                        "warehouse_inactive",
                        "idempotency_key_in_progress",
                    ],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False)
    def create(self, request: Request) -> Response:
        serializer = ReservationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        product = selectors.product_get(sku=data["sku"], vendor_id=data.get("vendor"))
        warehouse = None  # the service picks the vendor's default
        if data.get("warehouse"):
            warehouse = selectors.warehouse_get(code=data["warehouse"], vendor_id=product.vendor_id)
        ttl = data.get("ttl_seconds")
        with service_errors(fields={"ttl": "ttl_seconds"}):
            reservation = services.stock_reserve(
                product=product,
                warehouse=warehouse,
                quantity=data["quantity"],
                ttl=None if ttl is None else timedelta(seconds=ttl),
                origin=_origin(request, reference=data["reference"]),
                idempotency_key=_service_key(request, "reservation"),
            )
        if reservation.replayed:
            # The ledger already holds this reservation (its HTTP record had expired).
            return Response(
                ReservationSerializer(reservation).data, headers={REPLAY_HEADER: "true"}
            )
        return Response(ReservationSerializer(reservation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Release a reservation (the stock becomes available again)",
        description=(
            "An order line's reservation (`owner` `order_line`) is the order's: 409 "
            "`reservation_owned_by_order`; cancel or ship the order instead."
        ),
        request=ReservationActionSerializer,
        responses={200: ReservationSerializer, **_RESERVATION_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        return self._close(request, services.stock_release)

    @extend_schema(
        summary="Commit a reservation (shipped: on_hand and reserved both go down)",
        description=(
            "An order line's reservation (`owner` `order_line`) is the order's: 409 "
            "`reservation_owned_by_order`; cancel or ship the order instead."
        ),
        request=ReservationActionSerializer,
        responses={200: ReservationSerializer, **_RESERVATION_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def commit(self, request: Request, pk: str) -> Response:
        return self._close(request, services.stock_commit)

    def _close(self, request: Request, service) -> Response:
        serializer = ReservationActionSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        reservation = self.get_object()
        reservation = service(
            reservation=reservation,
            origin=_origin(
                request, reason=serializer.validated_data["reason"], reference=reservation.reference
            ),
        )
        return Response(ReservationSerializer(reservation).data)
