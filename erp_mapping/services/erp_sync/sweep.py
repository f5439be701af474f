"""The sweep: the one scheduler of retries, resends and backfills."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from channels_sync.adapters import OrderStatus
from erp_mapping import selectors
from erp_mapping.models import ErpAgent
from erp_mapping.services.erp_sync.base import (
    BACKFILL_DAYS,
    SWEEP_BATCH,
    SWEEP_VENDOR_BATCH,
    Job,
    Kind,
    Op,
    S,
    _event,
)
from erp_mapping.services.erp_sync.jobs import erp_sync_job_create, send_enqueue
from erp_mapping.services.erp_sync.send import _dead_locked, agent_unsigned_alert
from orders.models import Order

logger = structlog.get_logger(__name__)


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
