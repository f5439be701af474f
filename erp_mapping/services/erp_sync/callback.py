"""The agent's callback about a job it accepted."""

import uuid
from dataclasses import dataclass

import structlog
from django.db import transaction

from erp_mapping.models import ErpAgent
from erp_mapping.services.erp_sync.base import (
    SYNC_OUTCOMES,
    ErpSyncJobCompleted,
    ErpSyncJobNotFound,
    Job,
    Kind,
    S,
    _event,
)
from erp_mapping.services.erp_sync.send import _complete, _failed_locked

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CallbackResult:
    job: Job
    changed: bool


def erp_sync_callback(
    *,
    agent: ErpAgent,
    job_id: int,
    status: str,
    erp_reference: str = "",
    erp_document_id: str = "",
    error: str = "",
    idempotency_key: uuid.UUID | None = None,
) -> CallbackResult:
    """Apply the agent's callback about a job it accepted (202); idempotent.

    A job of another vendor is not found (`erp_sync_job_not_found`). `completed` completes
    the job (see `_complete`: the same callback again changes nothing, another reference
    is `erp_reference_conflict`). `failed` counts as the failure of the attempt the agent
    accepted (retry with backoff, or dead after the last attempt) when the job awaits its
    callback; while the job is still `processing` (the callback overtook the worker's
    record of the 202) it is kept on the job and applied when the worker records the 202.
    Otherwise it changes nothing (a replay, a resend under way, or a callback about an
    earlier key: `idempotency_key` given and not the job's), except for a completed job,
    where it is refused (`erp_sync_job_completed`). Locks the job.
    """
    job = Job.objects.filter(pk=job_id, vendor_id=agent.vendor_id).first()
    if job is None:
        raise ErpSyncJobNotFound(details={"job_id": job_id})
    actor = f"agent:{agent.vendor_id}"
    if status == S.COMPLETED:
        before = job.status, job.erp_reference
        done = _complete(
            job.pk,
            reference=erp_reference,
            document=erp_document_id,
            via=Job.CompletedVia.CALLBACK,
            actor=actor,
        )
        changed = before != (done.status, done.erp_reference)
        SYNC_OUTCOMES.labels("callback_completed" if changed else "callback_replay").inc()
        return CallbackResult(done, changed)
    reason = f"the agent reported a failure: {error or 'no reason given'}"
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status == S.COMPLETED:
            raise ErpSyncJobCompleted(
                details={"job_id": locked.pk, "erp_reference": locked.erp_reference}
            )
        stale = idempotency_key is not None and idempotency_key != locked.idempotency_key
        if stale or locked.status not in (S.AWAITING_CALLBACK, S.PROCESSING):
            SYNC_OUTCOMES.labels("callback_replay").inc()
            return CallbackResult(locked, False)
        if locked.status == S.PROCESSING:
            if locked.reported_failure:
                return CallbackResult(locked, False)
            locked.reported_failure = (error or "no reason given")[:1000]
            locked.save(update_fields=["reported_failure", "updated_at"])
            _event(
                locked,
                Kind.FAILURE_REPORTED,
                from_status=S.PROCESSING,
                to_status=S.PROCESSING,
                actor=actor,
                message=reason,
            )
        else:
            _failed_locked(locked, error=reason)
    SYNC_OUTCOMES.labels("callback_failed").inc()
    return CallbackResult(Job.objects.get(pk=job.pk), True)
