"""The ERP agent API: list and register agents (API keys), heartbeat (agent token)."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.idempotency import idempotent
from core.schema import error_responses, idempotency_header
from erp_mapping.auth import AgentThrottle, AgentTokenAuthentication
from erp_mapping.models import ErpAgent
from erp_mapping.serializers.agents import (
    AgentRegisteredSerializer,
    AgentRegisterSerializer,
    ErpAgentSerializer,
    HeartbeatResultSerializer,
    HeartbeatSerializer,
    agent_registered_data,
)
from erp_mapping.services.agents import agent_heartbeat, agent_register
from inventory.selectors import vendor_get

AGENT_AUTH_ERRORS = {401: ["invalid_agent_token"]}


class AgentListView(generics.ListCreateAPIView):
    serializer_class = ErpAgentSerializer
    filterset_fields = ["status", "erp_type"]
    required_scopes = {"GET": "read", "POST": "admin"}

    def get_queryset(self):
        return ErpAgent.objects.order_by("vendor__name", "pk")

    @extend_schema(
        summary="List ERP agents (status, last heartbeat, token prefix; never the token)",
        responses={200: ErpAgentSerializer(many=True), **error_responses()},
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Register (or re-register) a vendor's ERP agent",
        description=(
            "One agent per vendor. Answers 201 for a new agent and 200 for a re-registration, "
            "with the agent, its bearer token in `token` and the secret it checks SyncStore's "
            "signed calls with in `outbound_secret`: both are shown in this answer only "
            "(SyncStore keeps the token's hash and the secret encrypted). Re-registering issues "
            "a new token and a new secret; the previous token stops working at once. Needs the "
            "`admin` scope. With an `Idempotency-Key`, a retry replays the first answer (the "
            "same token and secret, kept encrypted for the key's 24 hours) instead of issuing "
            "others."
        ),
        request=AgentRegisterSerializer,
        parameters=[idempotency_header(required=False)],
        responses={
            201: AgentRegisteredSerializer,
            200: AgentRegisteredSerializer,
            **error_responses(
                {
                    400: ["validation_error"],
                    404: ["vendor_not_found"],
                    409: ["idempotency_key_in_progress"],
                    422: ["idempotency_key_reused"],
                }
            ),
        },
    )
    @idempotent(required=False, secret_fields=("token", "outbound_secret"))
    def post(self, request: Request, *args, **kwargs) -> Response:
        serializer = AgentRegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        registered = agent_register(
            vendor=vendor_get(data["vendor_id"]),
            agent_url=data["agent_url"],
            erp_type=data["erp_type"],
            registered_by=request.user.actor,
        )
        return Response(
            agent_registered_data(registered.agent, registered.token, registered.outbound_secret),
            status=status.HTTP_201_CREATED if registered.created else status.HTTP_200_OK,
        )


class AgentHeartbeatView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    throttle_classes = [AgentThrottle]
    required_scopes = {"*": "agent"}

    @extend_schema(
        summary="Agent heartbeat: mark the calling agent online",
        description=(
            "Authenticated with the agent's token (`Authorization: Bearer ssa_...`). The body "
            'is optional: `{"version": "..."}` records the agent\'s version. Answers the '
            "agent's status and the server time. An agent silent for 2 minutes is marked "
            "degraded, for 10 minutes offline (with an alert); any heartbeat or ingest batch "
            "brings it back online."
        ),
        request=HeartbeatSerializer,
        responses={
            200: HeartbeatResultSerializer,
            **error_responses({400: ["validation_error"], **AGENT_AUTH_ERRORS}),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = HeartbeatSerializer(data=request.data or {})
        serializer.is_valid(raise_exception=True)
        now = timezone.now()
        agent = agent_heartbeat(
            agent=request.auth, version=serializer.validated_data.get("version"), now=now
        )
        return Response({"status": agent.status, "server_time": now})
