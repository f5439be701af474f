"""What staff do from the console: retry a dead job, send one now."""

import structlog
from django.db import transaction
from django.utils import timezone

from erp_mapping.services.erp_sync.base import (
    Job,
    Kind,
    S,
    _event,
)
from erp_mapping.services.erp_sync.jobs import send_enqueue
from erp_mapping.services.erp_sync.send import SendResult, _revive_locked, erp_sync_send

logger = structlog.get_logger(__name__)


def erp_sync_job_retry(*, job_id: int, actor: str, enqueue: bool = True) -> Job:
    """Give a dead job a fresh set of attempts and queue it (the console's retry).

    When the order changed since the payload was built, the payload is rebuilt from the order
    as it is now (at the send) and sent under a new idempotency key; an unchanged one keeps
    its key (the agent answers with the document it may have made already). A job that is
    not dead is sent now instead (`erp_sync_job_send_now`); a completed job is left as it is.
    Locks the job.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != S.DEAD:
            return _send_now_locked(job, actor=actor, enqueue=enqueue)
        _revive_locked(job, actor=actor)
        if enqueue:
            transaction.on_commit(lambda: send_enqueue(job.pk), robust=True)
    logger.info("erp_sync.retried", job_id=job_id, actor=actor)
    return job


def erp_sync_job_send_now(*, job_id: int, actor: str) -> Job:
    """Make a waiting, failed or awaiting job due now and queue it (dead: use retry)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        return _send_now_locked(job, actor=actor, enqueue=True)


def _send_now_locked(job: Job, *, actor: str, enqueue: bool) -> Job:
    if job.status not in (S.PENDING, S.FAILED, S.AWAITING_CALLBACK):
        return job  # completed, dead (retry it) or being sent
    previous = job.status
    job.status, job.next_attempt_at = S.PENDING, timezone.now()
    job.save(update_fields=["status", "next_attempt_at", "updated_at"])
    _event(job, Kind.SEND_NOW, from_status=previous, to_status=S.PENDING, actor=actor)
    if enqueue:
        transaction.on_commit(lambda: send_enqueue(job.pk), robust=True)
    return job


def erp_sync_revive_and_send(*, job_id: int) -> SendResult | None:
    """What a dead letter's retry runs: revive the job if it is dead, then send it."""
    if not Job.objects.filter(pk=job_id).exists():
        return None
    erp_sync_job_retry(job_id=job_id, actor="dead-letter console", enqueue=False)
    return erp_sync_send(job_id=job_id)
