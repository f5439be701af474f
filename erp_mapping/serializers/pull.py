"""Serializers of the nightly-pull API: sync runs and ERP connections."""

from rest_framework import serializers

from core.serializers import HttpUrlField
from erp_mapping.models import ErpConnection, SyncRun


class SyncRunSerializer(serializers.ModelSerializer):
    vendor_id = serializers.UUIDField(read_only=True)

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "vendor_id",
            "status",
            "trigger",
            "dry_run",
            "started_at",
            "completed_at",
            "attempts",
            "skus_processed",
            "items_changed",
            "invalid_rows",
            "unknown_skus",
            "api_latency_ms",
            "duration_ms",
            "bytes_received",
            "error_code",
            "error_message",
            "archive_path",
        ]


class SyncRunDetailSerializer(SyncRunSerializer):
    class Meta(SyncRunSerializer.Meta):
        fields = [*SyncRunSerializer.Meta.fields, "details"]


class ErpConnectionSerializer(serializers.ModelSerializer):
    """A connection as the API shows it: the token never leaves."""

    vendor_id = serializers.UUIDField(read_only=True)
    base_url = HttpUrlField(read_only=True)
    has_token = serializers.SerializerMethodField()

    class Meta:
        model = ErpConnection
        fields = ["vendor_id", "base_url", "enabled", "has_token", "created_at", "updated_at"]

    def get_has_token(self, obj: ErpConnection) -> bool:
        return bool(obj.token)


class ErpConnectionWriteSerializer(serializers.Serializer):
    base_url = HttpUrlField()
    token = serializers.CharField(
        required=False,
        allow_blank=False,
        max_length=4000,
        write_only=True,
        trim_whitespace=True,
        help_text="Bearer token; omit to keep the stored one (required the first time).",
    )
    enabled = serializers.BooleanField(default=True)
