"""ERP agents at the edge: registration, heartbeat, and the agent as the API shows it.

The token hash is never shown; the token itself only in the registration answer.
"""

from rest_framework import serializers

from core.serializers import HttpUrlField
from erp_mapping.models import ErpAgent


class ErpAgentSerializer(serializers.ModelSerializer):
    vendor_id = serializers.UUIDField(read_only=True)
    agent_url = HttpUrlField(read_only=True)

    class Meta:
        model = ErpAgent
        fields = [
            "id",
            "vendor_id",
            "agent_url",
            "erp_type",
            "status",
            "last_heartbeat_at",
            "agent_version",
            "token_prefix",
            "registered_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentRegisteredSerializer(ErpAgentSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The agent's bearer token: shown here once, never again."
    )
    outbound_secret = serializers.CharField(
        read_only=True,
        help_text="The key the agent checks SyncStore's calls with (`X-SyncStore-Signature: "
        't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, for a call without a '
        'body "<t>.<METHOD> <path>?<query>" as sent): shown here once, '
        "never again; a re-registration issues a new one.",
    )

    class Meta(ErpAgentSerializer.Meta):
        fields = [*ErpAgentSerializer.Meta.fields, "token", "outbound_secret"]
        read_only_fields = fields


class AgentRegisterSerializer(serializers.Serializer):
    vendor_id = serializers.UUIDField()
    agent_url = HttpUrlField()
    erp_type = serializers.CharField(max_length=50)


class HeartbeatSerializer(serializers.Serializer):
    version = serializers.CharField(
        max_length=50, required=False, allow_blank=True, help_text="The agent's version."
    )


class HeartbeatResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ErpAgent.Status.choices)
    server_time = serializers.DateTimeField()


def agent_registered_data(agent: ErpAgent, token: str, outbound_secret: str = "") -> dict:
    return {
        **ErpAgentSerializer(agent).data,
        "token": token,
        "outbound_secret": outbound_secret,
    }
