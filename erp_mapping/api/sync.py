"""Order -> ERP sync API: the agent's callback (agent token) and the sync jobs (`read`)."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from core.schema import error_responses
from erp_mapping import selectors
from erp_mapping.api.agents import AGENT_AUTH_ERRORS
from erp_mapping.auth import AgentCallbackThrottle, AgentTokenAuthentication
from erp_mapping.filters import ErpSyncJobFilter
from erp_mapping.serializers.sync import (
    CallbackResultSerializer,
    CallbackSerializer,
    ErpSyncJobSerializer,
)
from erp_mapping.services.erp_sync import erp_sync_callback


class AgentCallbackView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    throttle_classes = [AgentCallbackThrottle]
    required_scopes = {"*": "agent"}

    @extend_schema(
        summary="Agent callback: the outcome of an order the agent accepted (202)",
        description=(
            "Authenticated with the agent's token. `job_id` is the `job_id` of the "
            "`POST {agent_url}/orders` call the agent answered 202, `idempotency_key` (optional) "
            "its `Idempotency-Key`. `completed` (with "
            "`erp_reference`, and `erp_document_id` if any) completes the job and writes the "
            "order's ERP fields; `failed` (with `error`) counts as a failed attempt: the job is "
            "sent again after a backoff, or given up (dead letter) after the last attempt; "
            "about an earlier key it changes nothing. "
            "Idempotent: the same callback again answers 200 with `changed: false`. A job of "
            "another vendor answers 404 `erp_sync_job_not_found`; `completed` with another "
            "reference than the one recorded answers 409 `erp_reference_conflict` (the first "
            "is kept); `failed` for a completed job answers 409 `erp_sync_job_completed`."
        ),
        request=CallbackSerializer,
        responses={
            200: CallbackResultSerializer,
            **error_responses(
                {
                    400: ["validation_error"],
                    404: ["erp_sync_job_not_found"],
                    409: ["erp_reference_conflict", "erp_sync_job_completed"],
                    **AGENT_AUTH_ERRORS,
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = CallbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = erp_sync_callback(
            agent=request.auth,
            job_id=data["job_id"],
            status=data["status"],
            erp_reference=data["erp_reference"],
            erp_document_id=data.get("erp_document_id", ""),
            error=data.get("error", ""),
            idempotency_key=data.get("idempotency_key"),
        )
        job = result.job
        return Response(
            {
                "job_id": job.pk,
                "status": job.status,
                "erp_reference": job.erp_reference,
                "changed": result.changed,
            }
        )


@extend_schema_view(
    list=extend_schema(
        summary="List ERP sync jobs (orders sent to the ERP; newest first)",
        responses={200: ErpSyncJobSerializer(many=True), **error_responses()},
    ),
    retrieve=extend_schema(
        summary="One ERP sync job",
        responses={200: ErpSyncJobSerializer, **error_responses({404: ["not_found"]})},
    ),
)
class ErpSyncJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    serializer_class = ErpSyncJobSerializer
    filterset_class = ErpSyncJobFilter

    def get_queryset(self):
        return selectors.sync_jobs_list()
