"""Cross-cutting records: API keys, idempotency records, dead letters."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class BaseModel(models.Model):
    """Creation and last-update times for every table."""

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ApiKey(BaseModel):
    """A named, scoped, revocable credential for the REST API.

    Only the SHA-256 of the secret part is stored, with a short public prefix that finds
    the row; the full key is shown once, when it is made.
    """

    class Scope(models.TextChoices):
        READ = "read", "read"
        WRITE = "write", "write"
        AGENT = "agent", "agent (ERP agents)"
        ADMIN = "admin", "admin"

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Requests per minute for this key; blank uses API_KEY_RATE_LIMIT_PER_MINUTE.",
    )
    created_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(BaseModel):
    """A request made with an `Idempotency-Key`, and the response to replay (24 hours)."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"

    owner = models.CharField(max_length=100, help_text="Who sent the key (API key id).")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path, body.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="uniq_idempotency_owner_key"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires_idx")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class DeadLetter(BaseModel):
    """A job that failed for good: kept for staff to retry or resolve from the admin.

    One row per stuck job: the same task failing again with the same arguments adds to the
    row's attempts instead of making another.
    """

    class Status(models.TextChoices):
        OPEN = "open", "open"
        RETRIED = "retried", "retried"
        RESOLVED = "resolved", "resolved"

    source = models.CharField(max_length=64, help_text="The subsystem that gave up.")
    task_name = models.CharField(max_length=200)
    task_id = models.CharField(max_length=64, blank=True)
    args = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    kwargs = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    fingerprint = models.CharField(max_length=64, editable=False)
    error_class = models.CharField(max_length=200)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    first_failed_at = models.DateTimeField(default=timezone.now)
    last_failed_at = models.DateTimeField(default=timezone.now)
    correlation_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    retry_count = models.PositiveIntegerField(default=0)
    retried_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-last_failed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(status__in=["open", "retried"]),
                name="uniq_deadletter_unresolved_job",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-last_failed_at"], name="deadletter_status_idx"),
            models.Index(fields=["fingerprint"], name="deadletter_fingerprint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} ({self.status}, {self.attempts} attempts)"


class AuditEvent(models.Model):
    """Who changed which configuration, when, from what to what.

    Written by the services in the same transaction as the change they describe (so a
    rolled-back change leaves no row, and a committed one always has its row). `changes`
    maps each changed field to `[old, new]`; a secret field (credentials) is listed with
    `["(hidden)", "(changed)"]`, never its value. Rows are kept: no edit, no delete.
    """

    class Action(models.TextChoices):
        CREATED = "created", "created"
        UPDATED = "updated", "updated"
        DELETED = "deleted", "deleted"
        REVOKED = "revoked", "revoked"
        RESOLVED = "resolved", "resolved"
        CREDENTIALS_CHANGED = "credentials_changed", "credentials changed"
        OTHER = "other", "other"

    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    actor = models.CharField(
        max_length=150, help_text="user:<name>, api_key:<name>, agent:<name> or system."
    )
    action = models.CharField(max_length=32, choices=Action.choices)
    object_type = models.CharField(max_length=100, help_text="app_label.model of the object.")
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    correlation_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
            models.Index(fields=["actor", "-created_at"], name="audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type} {self.object_repr or self.object_id}"
