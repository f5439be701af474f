"""Orders to the ERP: one sync job per (order, operation), sent to the vendor's agent.

A confirmed order gets its `order.create` job once (the unique (order, operation)), on the
commit of the "order confirmed" hook; a cancelled order whose create job exists gets its
`order.cancel` job the same way. A cancel never overtakes its create: while the create job
is not completed the cancel waits (no attempt used) and follows as soon as the create
completes; an order cancelled before its create was sent is still created in the ERP and
then cancelled there. A cancel whose create is dead is dead too (its own dead letter); it
is revived by itself when the create is revived and completes.

The payload is built at the job's first send, from the order as it is then, and kept: every
resend carries the same body under the same key. Sending (`erp_sync_send`) claims the job
with a conditional UPDATE that sets `processing` and a lease (`locked_until`): two workers
never send one job at once. Held without using an attempt (`wait_reason`, one `waiting`
event per reason) while:

- the vendor has no agent, or its agent no outbound secret (an alert per agent);
- the order `needs_mapping`, or is named in an open `duplicate_order` conflict (create);
- the order's create job is not completed (cancel);
- the vendor's circuit is open (`AgentUnavailable`), until it lets a trial through;
- the agent answered 401, 403 or 404: a fault of the agent's set-up (a secret it lacks, a
  wrong URL), not of this job: the failure counts on the circuit and one alert per vendor
  says what to fix.

The agent gets `POST {agent_url}/orders` with the job's `idempotency_key` (a UUID) as
`Idempotency-Key` (it keeps one document per key, so a resend is harmless) and a signature.
Its answer decides:

- 200 with `erp_reference`: completed; the order's ERP fields are written.
- 202: `awaiting_callback`; the agent calls back (`erp_sync_callback`). Without a callback
  in `ERP_CALLBACK_TIMEOUT` the sweep sends it again. A `failed` callback that overtakes
  the worker's record of the 202 is kept on the job and applied when the 202 is recorded.
- no answer, 5xx, 408, 429: `failed`, tried again after an exponential backoff with jitter;
  after `ERP_SYNC_MAX_ATTEMPTS` attempts `dead`, with a dead letter.
- another 4xx (400, 409, 422): a refusal that repeating will not change: `dead` at once.

The sweep (`erp_sync_sweep`, beat) is the one scheduler of retries (see its docstring).
Every change of a job writes an `ErpSyncEvent` in the same transaction. A dead job is
retried from the dead-letter console (`erp_mapping.erp_sync_send` with `revive`) or the job
admin: its payload is rebuilt from the order as it is now and sent under a new key.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from prometheus_client import Counter

from channels_sync.adapters import OrderStatus
from core.cache import QUEUE_ERRORS
from core.correlation import get_correlation_id
from core.errors import ConflictError, NotFoundError
from core.models import DeadLetter
from core.services import alert_send, dead_letter_record
from core.task_base import backoff_seconds
from erp_mapping import selectors
from erp_mapping.clients.agent import AgentCallError, AgentUnavailable, agent_client_for
from erp_mapping.models import ErpAgent, ErpSyncEvent, ErpSyncJob
from erp_mapping.tasks.sync import erp_sync_send as erp_sync_send_task
from orders.models import Order

logger = structlog.get_logger(__name__)

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


# --- creation ---------------------------------------------------------------------------------


def _json(value: object) -> object:
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def order_payload(order: Order) -> dict:
    """What the agent receives for an order: the order, its customer, address and lines."""
    channel = order.channel
    lines = order.lines.select_related("product", "warehouse").order_by("line_number")
    return _json(
        {
            "order_id": order.pk,
            "order_number": order.order_number,
            "external_id": order.external_id,
            "channel": None
            if channel is None
            else {"id": channel.pk, "type": channel.type, "name": channel.name},
            "vendor_id": order.vendor_id,
            "status": order.status,
            "placed_at": order.placed_at,
            "paid_at": order.paid_at,
            "confirmed_at": order.confirmed_at,
            "customer": order.customer,
            "address": order.address,
            "amount": order.amount,
            "currency": order.currency,
            "payment_method": order.payment_method,
            "lines": [
                {
                    "line_number": line.line_number,
                    "sku": line.product.sku if line.product_id else line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "discount": line.discount,
                    "vat_rate": line.vat_rate,
                    "vat_amount": line.vat_amount,
                    "warehouse_code": line.warehouse.code if line.warehouse_id else None,
                }
                for line in lines
            ],
        }
    )


def _cancel_payload(order: Order, create: Job) -> dict:
    return _json(
        {
            "order_id": order.pk,
            "order_number": order.order_number,
            "external_id": order.external_id,
            "vendor_id": order.vendor_id,
            "status": order.status,
            "cancelled_at": order.updated_at if order.status == OrderStatus.CANCELLED else None,
            "erp_reference": create.erp_reference,
            "erp_document_id": create.erp_document_id,
        }
    )


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


def erp_sync_job_create(*, order_id: int, operation: str) -> Job | None:
    """Create the order's job for `operation` unless it exists, and queue its send on commit.

    Idempotent: the unique (order, operation) settles two creations at once (the loser
    returns the winner's job). An `order.cancel` job is made only for an order that has
    an `order.create` job (an order never sent has nothing to cancel in the ERP). Returns
    None when there is nothing to create (no such order, nothing to cancel). The payload
    is not built here but at the first send (an order may still be mapped meanwhile).
    """
    existing = Job.objects.filter(order_id=order_id, operation=operation).first()
    if existing is not None:
        return existing
    order = Order.objects.filter(pk=order_id).only("pk", "vendor_id").first()
    if order is None:
        return None
    if (
        operation == Op.ORDER_CANCEL
        and not Job.objects.filter(order_id=order_id, operation=Op.ORDER_CREATE).exists()
    ):
        return None
    try:
        with transaction.atomic():
            job = Job.objects.create(
                order_id=order.pk,
                vendor_id=order.vendor_id,
                operation=operation,
                correlation_id=get_correlation_id() or "",
            )
            _event(job, Kind.CREATED, to_status=job.status)
            # A vendor without an agent has nowhere to send it: the job waits (pending, no
            # attempt used) and the sweep sends it once an agent is registered.
            if ErpAgent.objects.filter(vendor_id=order.vendor_id).exists():
                transaction.on_commit(lambda: send_enqueue(job.pk), robust=True)
    except IntegrityError:
        return Job.objects.get(order_id=order_id, operation=operation)
    logger.info("erp_sync.job_created", job_id=job.pk, order_id=order_id, operation=operation)
    return job


def order_confirmed_listener(order_id: int) -> None:
    """The "order confirmed" hook: the order's create job."""
    erp_sync_job_create(order_id=order_id, operation=Op.ORDER_CREATE)


def order_cancelled_listener(order_id: int) -> None:
    """The "order cancelled" hook: the order's cancel job, if it was sent (or is to be)."""
    erp_sync_job_create(order_id=order_id, operation=Op.ORDER_CANCEL)


def send_enqueue(job_id: int) -> bool:
    """Queue the job's send; a queue that is down is logged (the sweep queues it later)."""
    try:
        erp_sync_send_task.apply_async(kwargs={"job_id": job_id})
    except QUEUE_ERRORS:
        logger.exception("erp_sync.enqueue_failed", job_id=job_id)
        return False
    return True


# --- sending ----------------------------------------------------------------------------------


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


# --- the agent's callback -------------------------------------------------------------------


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


# --- staff ------------------------------------------------------------------------------------


def _revive_locked(job: Job, *, actor: str, message: str = "") -> None:
    """Bring the locked dead job back: fresh attempts, and its payload rebuilt at the next
    send from the order as it is then, under a new idempotency key (the agent would refuse
    another body under the old key)."""
    job.status, job.attempts, job.next_attempt_at, job.locked_until = S.PENDING, 0, None, None
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


def erp_sync_job_retry(*, job_id: int, actor: str, enqueue: bool = True) -> Job:
    """Give a dead job a fresh set of attempts and queue it (the console's retry).

    The payload is rebuilt from the order as it is now (at the send) and sent under a new
    idempotency key. A job that is not dead is sent now instead (`erp_sync_job_send_now`);
    a completed job is left as it is. Locks the job.
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


# --- the sweep --------------------------------------------------------------------------------


@dataclass
class SweepReport:
    created: int = 0
    callback_timeouts: int = 0
    stuck: int = 0
    queued: int = 0
    vendors_skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def erp_sync_sweep(*, now: datetime | None = None) -> SweepReport:
    """Queue every job that is due (beat: every `ERP_SYNC_SWEEP_INTERVAL_SECONDS`).

    - creates the jobs a failed hook listener missed (orders confirmed, or cancelled, in
      the last two days, and after the first job ever made: a first deploy does not send
      the orders of the days before it);
    - reads each vendor's circuit once (one Redis round trip for all) and leaves the jobs
      of a vendor whose circuit is open untouched (no call, no event), as it does those of
      a vendor without an agent or whose agent has no outbound secret (alerted);
    - a job awaiting its callback past `ERP_CALLBACK_TIMEOUT` becomes due again (sent again
      under the same key: the agent answers with what it has);
    - a job `processing` past its lease lost its worker: due again (its attempt counted),
      or dead if that was its last one;
    - queues due `pending` and `failed` jobs that nothing holds (an order that needs
      mapping or is in an open duplicate-order conflict, a cancel whose create is not
      done): at most `SWEEP_VENDOR_BATCH` per vendor, the longest waiting first; one job
      (the trial) of a vendor whose circuit lets a trial through.

    Safe to run twice: every change is a conditional update, and the send claims its job.
    """
    from erp_mapping.clients.breaker import CLOSED, OPEN, breaker_states

    now = now or timezone.now()
    report = SweepReport(created=_jobs_backfill(now))
    sendable: list = []
    for agent in ErpAgent.objects.order_by("vendor_id"):
        if agent.outbound_secret:
            sendable.append(agent.vendor_id)
        elif Job.objects.filter(vendor_id=agent.vendor_id, status__in=[S.PENDING, S.FAILED]):
            agent_unsigned_alert(agent)
    caps: dict = {}
    for state in breaker_states(sendable, fresh=True):
        if state.state == OPEN and state.retry_at is not None and state.retry_at > now:
            report.vendors_skipped += 1
            continue
        caps[state.vendor_id] = SWEEP_VENDOR_BATCH if state.state == CLOSED else 1
    vendors = [vendor_id for vendor_id in sendable if str(vendor_id) in caps]
    overdue = Job.objects.filter(
        status=S.AWAITING_CALLBACK, next_attempt_at__lte=now, vendor_id__in=vendors
    )
    for job_id in overdue.values_list("pk", flat=True)[:SWEEP_BATCH]:
        report.callback_timeouts += _requeue(
            job_id,
            S.AWAITING_CALLBACK,
            Kind.CALLBACK_TIMEOUT,
            now,
            "no callback in time: sent again",
        )
    stuck = Job.objects.filter(status=S.PROCESSING, locked_until__lt=now, vendor_id__in=vendors)
    for job_id in stuck.values_list("pk", flat=True)[:SWEEP_BATCH]:
        report.stuck += _requeue(
            job_id,
            S.PROCESSING,
            Kind.STUCK,
            now,
            "stuck processing (its worker died): queued again",
        )
    for vendor_id in vendors:
        for job_id in _due(vendor_id, now)[: caps[str(vendor_id)]]:
            report.queued += send_enqueue(job_id)
    if any(report.as_dict().values()):
        logger.info("erp_sync.swept", **report.as_dict())
    return report


def _due(vendor_id: object, now: datetime) -> list[int]:
    """The vendor's due jobs that nothing holds, the longest waiting first."""
    creates = Job.objects.filter(
        order_id=OuterRef("order_id"), operation=Op.ORDER_CREATE, status__in=[S.COMPLETED, S.DEAD]
    )
    held_create = Q(operation=Op.ORDER_CREATE) & (
        Q(order__needs_mapping=True) | Exists(selectors.duplicate_orders_open())
    )
    held_cancel = Q(operation=Op.ORDER_CANCEL) & ~Exists(creates)
    return list(
        Job.objects.filter(vendor_id=vendor_id, status__in=[S.PENDING, S.FAILED])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .exclude(held_create | held_cancel)
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def _requeue(job_id: int, status: str, kind: str, now: datetime, message: str) -> int:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=status).first()
        if job is None:
            return 0
        if status == S.PROCESSING and job.locked_until and job.locked_until >= now:
            return 0
        if job.attempts >= settings.ERP_SYNC_MAX_ATTEMPTS:
            _dead_locked(
                job,
                error=f"gave up after {job.attempts} attempts: {message}",
                http_status=job.http_status,
            )
            return 1
        job.status, job.locked_until, job.next_attempt_at = S.PENDING, None, None
        # A failure reported about the lost attempt is superseded by the resend.
        job.reported_failure = ""
        job.save(
            update_fields=[
                "status",
                "locked_until",
                "next_attempt_at",
                "reported_failure",
                "updated_at",
            ]
        )
        _event(job, kind, from_status=status, to_status=S.PENDING, message=message)
    return 1


def _jobs_backfill(now: datetime) -> int:
    """Create the jobs whose hook listener failed (a bounded batch).

    Only orders confirmed (or cancelled) in the last `BACKFILL_DAYS` and after the first
    job was ever made: before it the sync did not exist, and a first deploy must not send
    days of old orders.
    """
    first = Job.objects.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return 0
    since = max(now - timedelta(days=BACKFILL_DAYS), first)
    jobs = Job.objects.filter(order_id=OuterRef("pk"))
    missing_create = (
        Order.objects.filter(confirmed_at__gte=since)
        .exclude(Exists(jobs.filter(operation=Op.ORDER_CREATE)))
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    missing_cancel = (
        Order.objects.filter(status=OrderStatus.CANCELLED, updated_at__gte=since)
        .filter(Exists(jobs.filter(operation=Op.ORDER_CREATE)))
        .exclude(Exists(jobs.filter(operation=Op.ORDER_CANCEL)))
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    created = 0
    for operation, order_ids in (
        (Op.ORDER_CREATE, missing_create),
        (Op.ORDER_CANCEL, missing_cancel),
    ):
        for order_id in list(order_ids):
            created += erp_sync_job_create(order_id=order_id, operation=operation) is not None
    return created
