"""The nightly-pull API: sync runs (scope `read`) and ERP connections (`admin` to write)."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from core.errors import NotFoundError
from core.schema import error_responses
from erp_mapping import selectors
from erp_mapping.filters import SyncRunFilter
from erp_mapping.models import ErpConnection
from erp_mapping.serializers.pull import (
    ErpConnectionSerializer,
    ErpConnectionWriteSerializer,
    SyncRunDetailSerializer,
    SyncRunSerializer,
)
from erp_mapping.services.connections import erp_connection_set
from inventory.selectors import vendor_get


@extend_schema_view(
    list=extend_schema(
        summary="List ERP pull runs (newest first)",
        responses={
            200: SyncRunSerializer(many=True),
            **error_responses(),
        },
    ),
    retrieve=extend_schema(
        summary="One ERP pull run, with its details (unknown SKUs, invalid rows, timings)",
        responses={200: SyncRunDetailSerializer, **error_responses({404: ["not_found"]})},
    ),
)
class SyncRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    filterset_class = SyncRunFilter

    def get_queryset(self):
        return selectors.sync_runs_list()

    def get_serializer_class(self):
        return SyncRunDetailSerializer if self.action == "retrieve" else SyncRunSerializer


class ErpConnectionView(APIView):
    required_scopes = {"GET": "read", "PUT": "admin"}

    @extend_schema(
        summary="A vendor's ERP connection (the token is never returned)",
        responses={
            200: ErpConnectionSerializer,
            **error_responses({404: ["vendor_not_found", "erp_connection_not_found"]}),
        },
    )
    def get(self, request: Request, vendor_id: str) -> Response:
        vendor = vendor_get(vendor_id)
        connection = ErpConnection.objects.filter(vendor=vendor).first()
        if connection is None:
            raise NotFoundError(
                "This vendor has no ERP connection.", code="erp_connection_not_found"
            )
        return Response(ErpConnectionSerializer(connection).data)

    @extend_schema(
        summary="Set a vendor's ERP connection (scope admin)",
        description=(
            "Creates or replaces the connection the nightly pull uses. The token is stored "
            "encrypted and never returned; omit it to keep the stored one."
        ),
        request=ErpConnectionWriteSerializer,
        responses={
            200: ErpConnectionSerializer,
            201: ErpConnectionSerializer,
            **error_responses(
                {400: ["validation_error", "token_required"], 404: ["vendor_not_found"]}
            ),
        },
    )
    def put(self, request: Request, vendor_id: str) -> Response:
        vendor = vendor_get(vendor_id)
        serializer = ErpConnectionWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        connection, created = erp_connection_set(
            vendor=vendor,
            base_url=data["base_url"],
            token=data.get("token"),
            enabled=data["enabled"],
            actor=request.user.actor,
        )
        return Response(
            ErpConnectionSerializer(connection).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
