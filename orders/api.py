"""The orders REST API (v1): create (confirmed, stock reserved), list, detail, cancel, ship.

Cancel and ship apply to orders entered through the API; a marketplace order's state comes
from its marketplace (409 `marketplace_order`).

Views validate input with serializers, read with selectors and change state only through
`orders.services`. Reads need the `read` scope, writes `write`.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from core.idempotency import idempotent
from core.schema import error_responses, idempotency_header
from inventory import selectors as inventory_selectors
from orders import selectors, services
from orders.filters import OrderFilter
from orders.models import OrderEvent
from orders.serializers import (
    OrderActionSerializer,
    OrderCreateSerializer,
    OrderDetailSerializer,
    OrderSerializer,
)


def _actor(request: Request) -> services.Actor:
    return services.Actor(
        source=OrderEvent.Source.API,
        actor=request.user.actor,
        event_ref=request.user.owner,
    )


_ACTION_ERRORS = error_responses(
    {
        400: ["validation_error"],
        404: ["order_not_found"],
        409: ["invalid_transition", "marketplace_order"],
    }
)


@extend_schema_view(
    list=extend_schema(summary="List orders", responses={200: OrderSerializer(many=True)}),
)
class OrderViewSet(mixins.ListModelMixin, GenericViewSet):
    serializer_class = OrderSerializer
    filterset_class = OrderFilter

    def get_queryset(self):
        return selectors.order_list()

    @extend_schema(
        summary="Create an order (confirmed: each line's stock is reserved)",
        description=(
            "An API order is ours: a line short of available stock refuses the whole order "
            "(409 `insufficient_stock`, every short line in `details.lines`), an unknown SKU "
            "or warehouse answers 400 naming the line (`details.line`, 1-based); nothing is "
            "reserved then. Requires an `Idempotency-Key`."
        ),
        request=OrderCreateSerializer,
        parameters=[idempotency_header(required=True)],
        responses={
            201: OrderDetailSerializer,
            **error_responses(
                {
                    400: [
                        "validation_error",
                        "idempotency_key_required",
                        "unknown_sku",
                        "unknown_warehouse",
                        "vendor_mismatch",
                        "invalid_quantity",
                    ],
                    404: ["vendor_not_found"],
                    409: [
                        "insufficient_stock",
                        "order_exists",
                        "warehouse_inactive",
                        "idempotency_key_in_progress",
                    ],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=True)
    def create(self, request: Request) -> Response:
        serializer = OrderCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        vendor = inventory_selectors.vendor_get(data.pop("vendor", None))
        lines = [services.OrderLineInput(**line) for line in data.pop("lines")]
        order = services.order_create(vendor=vendor, lines=lines, actor=_actor(request), **data)
        order = selectors.order_get(order_id=order.pk)
        return Response(OrderDetailSerializer(order).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Get an order with its lines and events",
        responses={200: OrderDetailSerializer, **error_responses({404: ["order_not_found"]})},
    )
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(OrderDetailSerializer(selectors.order_get(order_id=pk)).data)

    @extend_schema(
        summary="Cancel an API order that has not shipped (its stock is released)",
        description=(
            "Cancelling a cancelled order changes nothing and answers 200. A marketplace "
            "order answers 409 `marketplace_order`: cancel it on the marketplace; its status "
            "comes back through webhooks and polling."
        ),
        request=OrderActionSerializer,
        responses={200: OrderDetailSerializer, **_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        serializer = OrderActionSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        order = selectors.order_get(order_id=pk)
        services.order_cancel(
            order=order, actor=_actor(request), reason=serializer.validated_data["reason"]
        )
        return Response(OrderDetailSerializer(selectors.order_get(order_id=order.pk)).data)

    @extend_schema(
        summary="Mark an API order shipped (its reserved stock leaves: on_hand goes down)",
        description=(
            "Shipping a shipped (or delivered, completed) order changes nothing. A marketplace "
            "order answers 409 `marketplace_order`: ship it on the marketplace; its status "
            "comes back through webhooks and polling."
        ),
        request=OrderActionSerializer,
        responses={200: OrderDetailSerializer, **_ACTION_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def ship(self, request: Request, pk: str) -> Response:
        serializer = OrderActionSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        order = selectors.order_get(order_id=pk)
        services.order_ship(order=order, actor=_actor(request))
        return Response(OrderDetailSerializer(selectors.order_get(order_id=order.pk)).data)
