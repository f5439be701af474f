"""Order -> ERP sync at the edge: the agent's callback, and sync jobs as the API shows them."""

from rest_framework import serializers

from erp_mapping.models import ErpSyncJob

MAX_JOB_ID = 2**63 - 1
CALLBACK_STATUSES = [("completed", "completed"), ("failed", "failed")]


class CallbackSerializer(serializers.Serializer):
    job_id = serializers.IntegerField(
        min_value=1, max_value=MAX_JOB_ID, help_text="The job id (the `job_id` of the call)."
    )
    idempotency_key = serializers.UUIDField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The call's Idempotency-Key: a `failed` about an earlier key changes nothing.",
    )
    status = serializers.ChoiceField(
        choices=CALLBACK_STATUSES,
        help_text="`completed`: the ERP has the document; `failed`: it could not be made.",
    )
    erp_reference = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text="Required with `completed`."
    )
    erp_document_id = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    error = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="", help_text="Why it failed."
    )

    def validate(self, data: dict) -> dict:
        reference = (data.get("erp_reference") or "").strip()
        if data["status"] == "completed" and not reference:
            raise serializers.ValidationError(
                {"erp_reference": "A completed callback needs the ERP reference."}
            )
        data["erp_reference"] = reference
        return data


class CallbackResultSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ErpSyncJob.Status.choices)
    erp_reference = serializers.CharField()
    changed = serializers.BooleanField(
        help_text="False: the callback was a replay (or came too late) and changed nothing."
    )


class ErpSyncJobSerializer(serializers.ModelSerializer):
    order_id = serializers.IntegerField(read_only=True)
    vendor_id = serializers.UUIDField(read_only=True)
    order_number = serializers.CharField(source="order.order_number", read_only=True)
    completed_via = serializers.CharField(
        read_only=True,
        help_text="`answer` or `callback`: what told us the ERP has it (empty until completed).",
    )

    class Meta:
        model = ErpSyncJob
        fields = [
            "id",
            "order_id",
            "order_number",
            "vendor_id",
            "operation",
            "status",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "completed_at",
            "completed_via",
            "http_status",
            "last_error",
            "erp_reference",
            "erp_document_id",
            "correlation_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
