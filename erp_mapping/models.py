"""ERP code mappings, ERP agents and connections, and the record of each nightly pull."""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.fields import EncryptedTextField
from core.models import BaseModel
from erp_mapping.validators import http_url_validate
from inventory.models import Vendor
from orders.models import Order


class ErpCodeMapping(BaseModel):
    """An ERP code (unit, VAT rate, family, subfamily) and the internal code it stands for.

    A unit mapping with an empty ERP code is the vendor's fallback unit: it applies to items
    that name no unit.
    """

    class Type(models.TextChoices):
        UNIT = "unit", "unit"
        VAT = "vat", "VAT"
        FAMILY = "family", "family"
        SUBFAMILY = "subfamily", "subfamily"

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="erp_mappings")
    mapping_type = models.CharField(max_length=16, choices=Type.choices)
    erp_code = models.CharField(max_length=64, blank=True)
    resto_code = models.CharField(max_length=100)
    resto_label = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["vendor_id", "mapping_type", "erp_code"]
        verbose_name = "ERP code mapping"
        constraints = [
            models.UniqueConstraint(
                fields=["vendor", "mapping_type", "erp_code"], name="uniq_erp_mapping_code"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mapping_type} {self.erp_code or '(fallback)'} -> {self.resto_code}"


class ErpAgent(BaseModel):
    """The on-premise agent next to a vendor's ERP that pushes items and stock to us.

    Only the SHA-256 of its bearer token is stored; the token is shown once, when the agent
    is registered.
    """

    class Status(models.TextChoices):
        ONLINE = "online", "online"
        DEGRADED = "degraded", "degraded"
        OFFLINE = "offline", "offline"

    vendor = models.OneToOneField(Vendor, on_delete=models.PROTECT, related_name="erp_agent")
    agent_url = models.CharField(max_length=500, validators=[http_url_validate])
    erp_type = models.CharField(max_length=50)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    agent_version = models.CharField(max_length=50, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(
        max_length=16, editable=False, help_text="The token's first characters, to tell them apart."
    )
    registered_by = models.CharField(max_length=150, blank=True)
    outbound_secret = EncryptedTextField(
        blank=True,
        editable=False,
        help_text="Signs what SyncStore sends the agent (stored encrypted; shown once, when "
        "the agent is registered).",
    )

    class Meta:
        ordering = ["vendor__name"]
        verbose_name = "ERP agent"

    def __str__(self) -> str:
        return f"{self.erp_type} agent of {self.vendor_id}"


class ErpConnection(BaseModel):
    """How the nightly pull reaches a vendor's ERP REST API."""

    vendor = models.OneToOneField(Vendor, on_delete=models.PROTECT, related_name="erp_connection")
    base_url = models.CharField(max_length=500, validators=[http_url_validate])
    token = EncryptedTextField(help_text="Bearer token (stored encrypted).")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["vendor__name"]
        verbose_name = "ERP connection"

    def __str__(self) -> str:
        return f"{self.vendor_id} -> {self.base_url}"


class SyncRun(BaseModel):
    """One nightly ERP pull of one vendor: what it read, what it changed, how it went."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        COMMAND = "command", "command"
        ADMIN = "admin", "admin"
        API = "api", "api"

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="sync_runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    skus_processed = models.PositiveIntegerField(default=0)
    items_changed = models.PositiveIntegerField(default=0)
    invalid_rows = models.PositiveIntegerField(default=0)
    unknown_skus = models.PositiveIntegerField(default=0)
    api_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    bytes_received = models.PositiveBigIntegerField(default=0)
    error_code = models.CharField(
        max_length=50,
        blank=True,
        help_text="Why the run failed or was skipped, as a stable code (see the README).",
    )
    error_message = models.TextField(blank=True)
    archive_path = models.CharField(max_length=300, blank=True)
    details = models.JSONField(
        default=dict,
        blank=True,
        help_text="Unknown SKUs, invalid rows and other figures (lists capped).",
    )

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # The cross-process run lock: at most one running pull per vendor (dry runs
            # write no stock and take no lock).
            models.UniqueConstraint(
                fields=["vendor"],
                condition=Q(status="running", dry_run=False),
                name="uniq_running_sync_run",
            ),
        ]
        indexes = [models.Index(fields=["vendor", "-started_at"], name="sync_run_vendor_idx")]

    def __str__(self) -> str:
        return f"pull {self.pk} of {self.vendor_id} ({self.status})"


class ErpSyncJob(BaseModel):
    """One operation on one order to be carried out in the vendor's ERP through its agent.

    One job per (order, operation), by constraint: a confirmed order gets its `order.create`
    job once, whichever path confirmed it and however often. `idempotency_key` (a UUID, unique
    across installations and restored databases) is the key the agent deduplicates on; it
    is replaced only when the payload is rebuilt (a dead job retried from the console).
    """

    class Operation(models.TextChoices):
        ORDER_CREATE = "order.create", "order.create"
        ORDER_CANCEL = "order.cancel", "order.cancel"

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        PROCESSING = "processing", "processing"
        AWAITING_CALLBACK = "awaiting_callback", "awaiting callback"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        DEAD = "dead", "dead"

    class CompletedVia(models.TextChoices):
        ANSWER = "answer", "the agent's answer"
        CALLBACK = "callback", "the agent's callback"

    class WaitReason(models.TextChoices):
        NO_AGENT = "no_agent", "the vendor has no ERP agent"
        NO_OUTBOUND_SECRET = "no_outbound_secret", "the agent has no outbound secret"
        NEEDS_MAPPING = "needs_mapping", "the order needs mapping"
        DUPLICATE_ORDER = "duplicate_order", "the order is in an open duplicate-order conflict"
        CREATE_PENDING = "create_pending", "the order's create job is not completed"
        CREATE_DEAD = "create_dead", "the order's create job is dead"
        CIRCUIT_OPEN = "circuit_open", "the agent's circuit is open"
        AGENT_CONFIG = "agent_config", "the agent refused the call (401/403/404)"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="erp_sync_jobs")
    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="erp_sync_jobs")
    operation = models.CharField(max_length=20, choices=Operation.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.UUIDField(
        default=uuid.uuid4,
        unique=True,
        editable=False,
        help_text="The key the agent deduplicates on (new when the payload is rebuilt).",
    )
    payload = models.JSONField(
        default=dict, blank=True, help_text="What is sent to the agent (built at the first send)."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker is sending it until then."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    erp_reference = models.CharField(max_length=100, blank=True)
    erp_document_id = models.CharField(max_length=100, blank=True)
    completed_via = models.CharField(
        max_length=16,
        choices=CompletedVia.choices,
        blank=True,
        help_text="What told us the ERP has it: the agent's answer or its callback.",
    )
    wait_reason = models.CharField(
        max_length=32,
        choices=WaitReason.choices,
        blank=True,
        help_text="Why the job is held without using an attempt (or, dead, why it was given up).",
    )
    reported_failure = models.CharField(
        max_length=1000,
        blank=True,
        help_text="A failed callback that arrived while the send was being recorded.",
    )
    correlation_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "ERP sync job"
        constraints = [
            models.UniqueConstraint(
                fields=["order", "operation"], name="uniq_erp_sync_job_order_operation"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="erp_sync_job_due_idx"),
            models.Index(fields=["vendor", "status"], name="erp_sync_job_vendor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.operation} of order {self.order_id} ({self.status})"


class ErpSyncEvent(models.Model):
    """One step in the life of an ERP sync job (append-only): what happened, and why."""

    class Kind(models.TextChoices):
        CREATED = "created", "created"
        COMPLETED = "completed", "completed"
        ACCEPTED = "accepted", "accepted (callback awaited)"
        FAILED = "failed", "failed (retry scheduled)"
        WAITING = "waiting", "waiting (no attempt used)"
        DEAD = "dead", "dead (dead letter)"
        CALLBACK_TIMEOUT = "callback_timeout", "no callback in time (sent again)"
        STUCK = "stuck", "stuck processing (queued again)"
        RETRIED = "retried", "retried by staff"
        SEND_NOW = "send_now", "sent now by staff"
        CONFLICT = "conflict", "conflicting answer ignored"
        FAILURE_REPORTED = "failure_reported", "failure reported while the send was recorded"

    job = models.ForeignKey(ErpSyncJob, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    message = models.CharField(max_length=1000, blank=True)
    details = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["job_id", "id"]
        verbose_name = "ERP sync event"
        indexes = [models.Index(fields=["job", "id"], name="erp_sync_event_job_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status or '-'} -> {self.to_status or '-'}"


class ReconciliationEvent(BaseModel):
    """One comparison of a vendor's stock with its ERP's, by checksums over SKU ranges."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        COMMAND = "command", "command"
        ADMIN = "admin", "admin"
        API = "api", "api"

    vendor = models.ForeignKey(
        Vendor, on_delete=models.PROTECT, related_name="reconciliation_events"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    skus_local = models.PositiveIntegerField(default=0, help_text="Stock rows held here.")
    ranges_compared = models.PositiveIntegerField(default=0)
    ranges_differing = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0, help_text="Calls made to the agent.")
    rows_fetched = models.PositiveIntegerField(default=0)
    drift_found = models.PositiveIntegerField(default=0)
    drift_fixed = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    details = models.JSONField(
        default=dict, blank=True, help_text="Drifted rows (capped) and unknown SKUs."
    )

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "ERP reconciliation"
        constraints = [
            models.UniqueConstraint(
                fields=["vendor"], condition=Q(status="running"), name="uniq_running_reconcile"
            ),
        ]

    def __str__(self) -> str:
        return f"reconciliation {self.pk} of {self.vendor_id} ({self.status})"
