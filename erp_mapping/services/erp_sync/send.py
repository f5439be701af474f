"""Sending a job to the agent, and what its answer does to the job."""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.models import DeadLetter
from core.services import alert_send, dead_letter_record
from core.task_base import backoff_seconds
from erp_mapping import selectors
from erp_mapping.clients.agent import AgentCallError, AgentUnavailable, agent_client_for
from erp_mapping.models import ErpAgent
from erp_mapping.services.erp_sync.base import (
    AGENT_CONFIG_STATUSES,
    DEAD_LETTER_TASK,
    SYNC_OUTCOMES,
    SYSTEM,
    ErpReferenceConflict,
    ErpSyncFailed,
    Job,
    Kind,
    Op,
    S,
    Wait,
    _event,
)
from erp_mapping.services.erp_sync.jobs import _cancel_payload, order_payload, send_enqueue
from orders.models import Order

logger = structlog.get_logger(__name__)


def _claim(job_id: int, *, now: datetime) -> datetime | None:
    """Take the job for this worker if it is due and free; return the lease (None: not ours).

    One conditional UPDATE: of two workers only one matches. The attempt is counted here,
    before the call, so a worker dying mid-call still uses it up.
    """
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    claimable = (Q(status__in=[S.PENDING, S.FAILED]) & due) | Q(
        status=S.PROCESSING, locked_until__lt=now
    )
    lease = now + timedelta(seconds=settings.ERP_SYNC_STUCK_SECONDS)
    taken = Job.objects.filter(claimable, pk=job_id).update(
        status=S.PROCESSING, locked_until=lease, attempts=F("attempts") + 1, updated_at=now
    )
    return lease if taken else None


def _locked_if_ours(job_id: int, lease: datetime) -> Job | None:
    """The job, locked, if this worker's lease still holds it (inside a transaction)."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.status != S.PROCESSING or job.locked_until != lease:
        return None
    return job


@dataclass(frozen=True)
class SendResult:
    job_id: int
    outcome: str  # completed, accepted, failed, dead, waiting, skipped


def erp_sync_send(*, job_id: int) -> SendResult:
    """Send one job to its vendor's agent, if it is due and no other worker holds it.

    Safe to call any number of times and from any number of workers (the claim). An
    unexpected error of ours is recorded on the job as a failed attempt (then raised); if
    even that cannot be written, the lease runs out and the sweep queues the job again.
    An answer that conflicts with the job's recorded reference is recorded on the job
    (`conflict` event) and returns quietly.
    """
    now = timezone.now()
    lease = _claim(job_id, now=now)
    if lease is None:
        return SendResult(job_id, "skipped")
    job = Job.objects.select_related("order").get(pk=job_id)
    try:
        outcome = _send_claimed(job, lease)
    except Exception as exc:
        logger.exception("erp_sync.send_crashed", job_id=job_id)
        _failed(job_id, lease, error=f"internal error: {type(exc).__name__}: {exc}")
        raise
    SYNC_OUTCOMES.labels(outcome).inc()
    return SendResult(job_id, outcome)


def _send_claimed(job: Job, lease: datetime) -> str:
    agent = ErpAgent.objects.filter(vendor_id=job.vendor_id).first()
    if agent is None:
        return _wait(job.pk, lease, until=None, reason=Wait.NO_AGENT)
    if not agent.outbound_secret:
        agent_unsigned_alert(agent)
        return _wait(job.pk, lease, until=None, reason=Wait.NO_OUTBOUND_SECRET)
    order = job.order
    if job.operation == Op.ORDER_CREATE:
        if order.needs_mapping:
            return _wait(job.pk, lease, until=None, reason=Wait.NEEDS_MAPPING)
        if selectors.order_duplicate_open(order):
            return _wait(job.pk, lease, until=None, reason=Wait.DUPLICATE_ORDER)
        if not job.payload:
            job.payload = order_payload(order)
            Job.objects.filter(pk=job.pk).update(payload=job.payload)
    else:
        create = Job.objects.filter(order_id=job.order_id, operation=Op.ORDER_CREATE).first()
        if create is None or create.status == S.DEAD:
            return _dead(
                job.pk,
                lease,
                error="the order's create job is dead: retry it; this cancel follows it",
                reason=Wait.CREATE_DEAD,
                attempt_used=False,
            )
        if create.status != S.COMPLETED:
            # The create's completion queues this job (and the sweep, once it completed).
            return _wait(job.pk, lease, until=None, reason=Wait.CREATE_PENDING)
        if not job.payload or not job.payload.get("erp_reference"):
            job.payload = _cancel_payload(order, create)
            Job.objects.filter(pk=job.pk).update(payload=job.payload)
    key = str(job.idempotency_key)
    body = {
        "job_id": str(job.pk),
        "idempotency_key": key,
        "operation": job.operation,
        "order": job.payload,
    }
    try:
        answer = agent_client_for(agent).call(
            "POST", "/orders", body=body, headers={"Idempotency-Key": key}
        )
    except AgentUnavailable as exc:
        return _wait(job.pk, lease, until=exc.retry_at, reason=Wait.CIRCUIT_OPEN, note=str(exc))
    except AgentCallError as exc:
        error = f"{exc}: {_short(exc.body)}" if exc.body else str(exc)
        status = exc.status
        if status in AGENT_CONFIG_STATUSES:
            agent_refused_alert(agent, status=status, error=error)
            until = timezone.now() + timedelta(seconds=settings.ERP_BREAKER_RESET_SECONDS)
            return _wait(
                job.pk,
                lease,
                until=until,
                reason=Wait.AGENT_CONFIG,
                note=f"the agent refused the call (fix the agent, not the order): {error}",
                http_status=status,
            )
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return _dead(job.pk, lease, error=f"refused by the agent: {error}", http_status=status)
        return _failed(job.pk, lease, error=error, http_status=status)
    if answer.status == 202:
        return _accepted(job.pk, lease)
    data = answer.data if isinstance(answer.data, dict) else {}
    reference, document = data.get("erp_reference"), data.get("erp_document_id") or ""
    if not _valid_reference(reference) or not isinstance(document, str | int):
        return _failed(
            job.pk,
            lease,
            error=f"the agent answered {answer.status} without an ERP reference",
            http_status=answer.status,
        )
    try:
        result = _complete(
            job.pk,
            reference=str(reference),
            document=str(document)[:100],
            via=Job.CompletedVia.ANSWER,
            http_status=answer.status,
        )
    except ErpReferenceConflict:
        return "conflict"  # recorded on the job; the first reference is kept
    return "completed" if result.status == S.COMPLETED else "skipped"


def _short(body: object) -> str:
    return json.dumps(body, default=str)[:300]


def _valid_reference(reference: object) -> bool:
    return isinstance(reference, str) and 0 < len(reference.strip()) <= 100


def agent_unsigned_alert(agent: ErpAgent) -> None:
    """Alert (once per agent and suppression window) that the agent has no outbound secret."""
    alert_send(
        title="ERP agent without an outbound secret",
        text=(
            f"The agent of vendor {agent.vendor_id} was registered before outbound secrets "
            "existed: SyncStore cannot sign its calls, so orders wait for it. Register the "
            "agent again and give it the outbound secret the registration returns."
        ),
        key=f"erp_agent_no_outbound_secret:{agent.pk}",
        severity="warning",
        fields={"Vendor": str(agent.vendor_id), "Agent": agent.agent_url},
    )


_REFUSAL_FIX = {
    401: "the agent does not accept SyncStore's signature: give it the outbound secret of "
    "the latest registration (or register it again)",
    403: "the agent forbids SyncStore's calls: check its permissions for this vendor",
    404: "the agent's URL has no /orders endpoint: check the agent URL of the registration",
}


def agent_refused_alert(agent: ErpAgent, *, status: int, error: str) -> None:
    """Alert (once per vendor and suppression window) that the agent refuses every call."""
    alert_send(
        title="ERP agent refuses SyncStore's calls",
        text=f"Orders of vendor {agent.vendor_id} wait: {_REFUSAL_FIX.get(status, error)}.",
        key=f"erp_agent_refused:{agent.vendor_id}",
        severity="critical",
        fields={"Vendor": str(agent.vendor_id), "Agent": agent.agent_url, "Answer": error[:200]},
    )


def _wait(
    job_id: int,
    lease: datetime,
    *,
    until: datetime | None,
    reason: str,
    note: str = "",
    http_status: int | None = None,
) -> str:
    """Put the job back as pending until `until` (None: until the sweep finds it sendable),
    giving back the attempt the claim counted. One `waiting` event per reason: the same
    wait again only moves `until`."""
    message = note or Wait(reason).label
    with transaction.atomic():
        job = _locked_if_ours(job_id, lease)
        if job is None:
            return "skipped"
        changed = job.wait_reason != reason
        job.status, job.locked_until, job.next_attempt_at = S.PENDING, None, until
        job.attempts = max(job.attempts - 1, 0)
        job.last_error, job.wait_reason = message[:1000], reason
        fields = ["status", "locked_until", "next_attempt_at", "attempts", "last_error"]
        if http_status is not None:
            job.http_status = http_status
            fields.append("http_status")
        job.save(update_fields=[*fields, "wait_reason", "updated_at"])
        if changed:
            _event(
                job,
                Kind.WAITING,
                from_status=S.PROCESSING,
                to_status=S.PENDING,
                http_status=http_status,
                message=message,
                details={"reason": reason, "until": until.isoformat() if until else None},
            )
    logger.info("erp_sync.waiting", job_id=job_id, reason=reason, until=until)
    return "waiting"


def _accepted(job_id: int, lease: datetime) -> str:
    """The agent took the job (202) and will call back; send it again if it never does.

    A `failed` callback that arrived while this worker was still in its call (recorded on
    the job as `reported_failure`) is applied now, as the failure of this attempt.
    """
    now = timezone.now()
    with transaction.atomic():
        job = _locked_if_ours(job_id, lease)
        if job is None:
            return "skipped"  # its callback (or another worker) got there first
        job.sent_at, job.http_status = now, 202
        if job.reported_failure:
            return _failed_locked(
                job, error=f"the agent reported a failure: {job.reported_failure}"
            )
        job.status, job.locked_until = S.AWAITING_CALLBACK, None
        job.next_attempt_at = now + timedelta(seconds=settings.ERP_CALLBACK_TIMEOUT)
        job.last_error = job.wait_reason = ""
        job.save(
            update_fields=[
                "status",
                "locked_until",
                "sent_at",
                "http_status",
                "next_attempt_at",
                "last_error",
                "wait_reason",
                "updated_at",
            ]
        )
        _event(job, Kind.ACCEPTED, from_status=S.PROCESSING, to_status=job.status, http_status=202)
    return "accepted"


def _failed(
    job_id: int,
    lease: datetime | None,
    *,
    error: str,
    http_status: int | None = None,
) -> str:
    """A failed attempt of this worker's: retry after a backoff, or dead after the last."""
    with transaction.atomic():
        job = _locked_if_ours(job_id, lease)
        if job is None:
            return "skipped"
        job.sent_at = timezone.now()
        return _failed_locked(job, error=error, http_status=http_status)


def _failed_locked(job: Job, *, error: str, http_status: int | None = None) -> str:
    """Record a failed attempt on the locked job: retry after a backoff, or dead."""
    if job.attempts >= settings.ERP_SYNC_MAX_ATTEMPTS:
        return _dead_locked(
            job,
            error=f"gave up after {job.attempts} attempts: {error}",
            http_status=http_status if http_status is not None else job.http_status,
        )
    now = timezone.now()
    delay = backoff_seconds(
        max(job.attempts - 1, 0),
        base=settings.ERP_SYNC_RETRY_BASE_SECONDS,
        cap=settings.ERP_SYNC_RETRY_MAX_SECONDS,
    )
    previous = job.status
    job.status, job.locked_until = S.FAILED, None
    job.next_attempt_at = now + timedelta(seconds=delay)
    job.last_error = error[:1000]
    if http_status is not None:
        job.http_status = http_status
    job.wait_reason = job.reported_failure = ""
    job.save(
        update_fields=[
            "status",
            "locked_until",
            "next_attempt_at",
            "last_error",
            "http_status",
            "sent_at",
            "wait_reason",
            "reported_failure",
            "updated_at",
        ]
    )
    Order.objects.filter(pk=job.order_id).update(erp_sync_error=error[:1000])
    _event(
        job,
        Kind.FAILED,
        from_status=previous,
        to_status=job.status,
        http_status=http_status,
        message=error,
        details={"retry_in_seconds": round(delay, 1)},
    )
    logger.warning(
        "erp_sync.failed",
        job_id=job.pk,
        error=error,
        http_status=http_status,
        attempt=job.attempts,
        retry_in_seconds=round(delay, 1),
    )
    return "failed"


def _dead(
    job_id: int,
    lease: datetime,
    *,
    error: str,
    http_status: int | None = None,
    reason: str = "",
    attempt_used: bool = True,
) -> str:
    with transaction.atomic():
        job = _locked_if_ours(job_id, lease)
        if job is None:
            return "skipped"
        if attempt_used:
            job.sent_at = timezone.now()
        else:
            job.attempts = max(job.attempts - 1, 0)
        return _dead_locked(job, error=error, http_status=http_status, reason=reason)


def _dead_locked(job: Job, *, error: str, http_status: int | None, reason: str = "") -> str:
    """Give the (locked) job up: `dead`, the order says why, and a dead letter, together."""
    previous = job.status
    job.status, job.locked_until, job.next_attempt_at = S.DEAD, None, None
    job.last_error, job.http_status = error[:1000], http_status
    job.wait_reason, job.reported_failure = reason, ""
    job.save(
        update_fields=[
            "status",
            "locked_until",
            "next_attempt_at",
            "attempts",
            "last_error",
            "http_status",
            "sent_at",
            "wait_reason",
            "reported_failure",
            "updated_at",
        ]
    )
    Order.objects.filter(pk=job.order_id).update(erp_sync_error=error[:1000])
    _event(
        job,
        Kind.DEAD,
        from_status=previous,
        to_status=S.DEAD,
        http_status=http_status,
        message=error,
        details={"reason": reason} if reason else None,
    )
    dead_letter_record(
        source="erp_mapping",
        task_name=DEAD_LETTER_TASK,
        kwargs={"job_id": job.pk, "revive": True},
        error=ErpSyncFailed(f"{job.operation} of order {job.order_id} (job {job.pk}): {error}"),
        attempts=max(job.attempts, 1),
    )
    logger.error("erp_sync.dead", job_id=job.pk, error=error, http_status=http_status)
    return "dead"


def _complete(
    job_id: int,
    *,
    reference: str,
    document: str,
    via: str,
    http_status: int | None = None,
    actor: str = SYSTEM,
) -> Job:
    """Complete the job and write the order's ERP fields; idempotent.

    Whoever holds the job (a worker mid-send, a timed-out resend), the ERP's word that it
    has the document is the truth. Completed already with the same reference: nothing
    changes. With another reference: refused (`erp_reference_conflict`), recorded, and the
    first reference kept.
    """
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status == S.COMPLETED:
            if job.erp_reference == reference:
                return job
            _event(
                job,
                Kind.CONFLICT,
                from_status=job.status,
                to_status=job.status,
                actor=actor,
                message=f"the agent reported {reference}; the job holds {job.erp_reference}",
                details={"reported": reference, "via": via},
            )
            logger.warning(
                "erp_sync.reference_conflict",
                job_id=job_id,
                reported=reference,
                kept=job.erp_reference,
            )
            conflict = ErpReferenceConflict(
                details={"job_id": job.pk, "erp_reference": job.erp_reference}
            )
        else:
            conflict = None
            previous = job.status
            job.status, job.completed_via, job.completed_at = S.COMPLETED, via, now
            job.erp_reference, job.erp_document_id = reference[:100], document[:100]
            job.locked_until = job.next_attempt_at = None
            job.last_error = job.wait_reason = job.reported_failure = ""
            if http_status is not None:
                job.http_status = http_status
            if via == Job.CompletedVia.ANSWER:
                job.sent_at = now
            job.save()
            cancel = job.operation == Op.ORDER_CANCEL
            Order.objects.filter(pk=job.order_id).update(
                erp_reference=job.erp_reference,
                erp_document_id=job.erp_document_id,
                erp_status="cancelled" if cancel else "created",
                erp_synced_at=now,
                erp_sync_error="",
                updated_at=now,
            )
            _event(
                job,
                Kind.COMPLETED,
                from_status=previous,
                to_status=S.COMPLETED,
                http_status=http_status,
                actor=actor,
                details={"via": via, "erp_reference": reference, "erp_document_id": document},
            )
            _dead_letters_close(job)
            if not cancel:
                _cancel_release(job)
    if conflict is not None:
        raise conflict
    logger.info("erp_sync.completed", job_id=job_id, via=via, erp_reference=reference)
    return job


def _dead_letters_close(job: Job, *, note: str = "") -> None:
    """Resolve the job's open dead letter: it completed (a retry, a late callback)."""
    now = timezone.now()
    DeadLetter.objects.filter(
        task_name=DEAD_LETTER_TASK,
        kwargs__job_id=job.pk,
        status__in=[DeadLetter.Status.OPEN, DeadLetter.Status.RETRIED],
    ).update(
        status=DeadLetter.Status.RESOLVED,
        resolved_by=SYSTEM,
        resolved_at=now,
        note=note or f"ERP sync job {job.pk} completed ({job.erp_reference}).",
        updated_at=now,
    )


def _cancel_release(create: Job) -> None:
    """The create completed: the order's waiting cancel job is due now, and a cancel that
    died because the create was dead is revived (fresh attempts, its dead letter closed)."""
    now = timezone.now()
    cancels = Job.objects.select_for_update().filter(
        order_id=create.order_id, operation=Op.ORDER_CANCEL
    )
    released = []
    for job in cancels:
        if job.status == S.PENDING:
            Job.objects.filter(pk=job.pk).update(next_attempt_at=now)
            released.append(job.pk)
        elif job.status == S.DEAD and job.wait_reason == Wait.CREATE_DEAD:
            _revive_locked(job, actor=SYSTEM, message="the order's create job completed")
            job.last_error = ""
            _dead_letters_close(job, note=f"The create job of order {job.order_id} completed.")
            released.append(job.pk)
    for job_id in released:
        transaction.on_commit(lambda job_id=job_id: send_enqueue(job_id), robust=True)


def _revive_locked(job: Job, *, actor: str, message: str = "") -> None:
    """Bring the locked dead job back with fresh attempts.

    A create whose order changed since its payload was built (a line mapped, an address
    corrected) gets its payload rebuilt at the next send under a new idempotency key (the
    agent would refuse another body under the old key). An unchanged one keeps its key: the
    agent may have taken it already (a 202 whose callback never came), and the same key lets
    it answer with the document it made instead of making a second one.
    """
    job.status, job.attempts, job.next_attempt_at, job.locked_until = S.PENDING, 0, None, None
    if job.operation == Op.ORDER_CREATE and job.payload != order_payload(job.order):
        job.payload, job.idempotency_key = {}, uuid.uuid4()
    job.wait_reason = job.reported_failure = ""
    job.save(
        update_fields=[
            "status",
            "attempts",
            "next_attempt_at",
            "locked_until",
            "payload",
            "idempotency_key",
            "wait_reason",
            "reported_failure",
            "updated_at",
        ]
    )
    _event(
        job,
        Kind.RETRIED,
        from_status=S.DEAD,
        to_status=S.PENDING,
        actor=actor,
        message=message,
        details={"idempotency_key": str(job.idempotency_key)},
    )
