"""The shared parts of the ERP sync: names, errors, counters, the event record."""

import json

from django.core.serializers.json import DjangoJSONEncoder
from prometheus_client import Counter

from core.correlation import get_correlation_id
from core.errors import ConflictError, NotFoundError
from erp_mapping.models import ErpSyncEvent, ErpSyncJob

Job = ErpSyncJob
S = ErpSyncJob.Status
Op = ErpSyncJob.Operation
Kind = ErpSyncEvent.Kind
Wait = ErpSyncJob.WaitReason

SYNC_OUTCOMES = Counter(
    "syncstore_erp_sync_outcomes_total",
    "Sends of ERP sync jobs and callbacks, by outcome.",
    ["outcome"],
)

DEAD_LETTER_TASK = "erp_mapping.erp_sync_send"
# Orders confirmed (or cancelled) this long ago at most are checked by the sweep for a job a
# failed hook listener did not create.
BACKFILL_DAYS = 2
SWEEP_BATCH = 1000
# At most this many jobs of one vendor are queued per sweep, so one vendor's backlog never
# starves the others' retries.
SWEEP_VENDOR_BATCH = 200
# Answers that say the agent is set up wrong (a secret it lacks, a wrong URL), not that
# this job is refused: the job waits, the circuit counts them.
AGENT_CONFIG_STATUSES = (401, 403, 404)
SYSTEM = "system:erp_sync"


class ErpSyncFailed(Exception):
    """An ERP sync job that failed for good (the dead letter's error)."""


class ErpSyncJobNotFound(NotFoundError):
    code = "erp_sync_job_not_found"
    message = "No ERP sync job with this id for this agent's vendor."


class ErpReferenceConflict(ConflictError):
    code = "erp_reference_conflict"
    message = "The job is completed with another ERP reference."


class ErpSyncJobCompleted(ConflictError):
    code = "erp_sync_job_completed"
    message = "The job is already completed; a failure cannot be reported for it."


def _json(value: object) -> object:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _event(
    job: Job,
    kind: str,
    *,
    from_status: str = "",
    to_status: str = "",
    http_status: int | None = None,
    actor: str = SYSTEM,
    message: str = "",
    details: dict | None = None,
) -> ErpSyncEvent:
    return ErpSyncEvent.objects.create(
        job=job,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        attempt=job.attempts,
        http_status=http_status,
        actor=actor[:150],
        message=message[:1000],
        details=details or {},
        correlation_id=get_correlation_id() or "",
    )
