"""Dead letters: record a job that failed for good, retry it, resolve it."""

import hashlib
import json
import traceback as tb

import structlog
from celery import current_app
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.correlation import get_correlation_id
from core.errors import ConflictError, DomainError
from core.metrics import DEAD_LETTERS
from core.models import DeadLetter

logger = structlog.get_logger(__name__)


def _fingerprint(task_name: str, args: list, kwargs: dict) -> str:
    payload = json.dumps([task_name, args, kwargs], sort_keys=True, cls=DjangoJSONEncoder)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def dead_letter_record(
    *,
    source: str,
    task_name: str,
    args: list | tuple = (),
    kwargs: dict | None = None,
    error: BaseException,
    attempts: int = 1,
    task_id: str = "",
) -> DeadLetter:
    """Record a job that failed for good.

    The same task with the same arguments failing again updates its open (or retried) row
    rather than adding one, so the console shows one row per stuck job.
    """
    args = json.loads(json.dumps(list(args), cls=DjangoJSONEncoder))
    kwargs = json.loads(json.dumps(dict(kwargs or {}), cls=DjangoJSONEncoder))
    fingerprint = _fingerprint(task_name, args, kwargs)
    now = timezone.now()
    trace = "".join(tb.format_exception(type(error), error, error.__traceback__))[-20000:]
    error_class = f"{type(error).__module__}.{type(error).__qualname__}"
    unresolved = [DeadLetter.Status.OPEN, DeadLetter.Status.RETRIED]
    # One unresolved row per job (a partial unique constraint): a concurrent failure of the
    # same job either creates it or, losing the race, adds to the row the other created.
    for _ in range(3):
        with transaction.atomic():
            letter = (
                DeadLetter.objects.select_for_update()
                .filter(fingerprint=fingerprint, status__in=unresolved)
                .first()
            )
            if letter is not None:
                letter.status = DeadLetter.Status.OPEN
                letter.attempts += attempts
                letter.last_failed_at = now
                letter.task_id = task_id or letter.task_id
                letter.error_class = error_class
                letter.error_message = str(error)[:10000]
                letter.traceback = trace
                letter.save()
                break
            try:
                with transaction.atomic():
                    letter = DeadLetter.objects.create(
                        source=source,
                        task_name=task_name,
                        task_id=task_id,
                        args=args,
                        kwargs=kwargs,
                        fingerprint=fingerprint,
                        error_class=error_class,
                        error_message=str(error)[:10000],
                        traceback=trace,
                        attempts=attempts,
                        first_failed_at=now,
                        last_failed_at=now,
                        correlation_id=get_correlation_id() or "",
                    )
                break
            except IntegrityError:
                continue
    if letter is None:
        raise RuntimeError(f"could not record the dead letter of {task_name}")
    DEAD_LETTERS.labels(source).inc()
    logger.error(
        "dead_letter.recorded",
        dead_letter_id=letter.pk,
        task_name=task_name,
        error_class=letter.error_class,
        attempts=letter.attempts,
    )
    return letter


def dead_letter_retry(*, dead_letter: DeadLetter, actor: str) -> DeadLetter:
    """Queue the original task again with its original arguments.

    Compare-and-set on the row as the caller saw it: of two people retrying at once, one
    queues the task and the other is told the dead letter changed. Outside a transaction the
    task is queued at once, and a queueing failure (broker down) puts the row back as open
    and raises `enqueue_failed`; inside one, it is queued after the commit.
    """
    if dead_letter.status == DeadLetter.Status.RESOLVED:
        raise ConflictError(
            "A resolved dead letter cannot be retried.", code="dead_letter_resolved"
        )
    now = timezone.now()
    changed = DeadLetter.objects.filter(
        pk=dead_letter.pk, status=dead_letter.status, retry_count=dead_letter.retry_count
    ).update(
        status=DeadLetter.Status.RETRIED,
        retried_at=now,
        retry_count=F("retry_count") + 1,
        updated_at=now,
    )
    if not changed:
        raise ConflictError(
            "This dead letter changed meanwhile (retried or resolved); reload it.",
            code="dead_letter_changed",
        )
    retried = DeadLetter.objects.get(pk=dead_letter.pk)

    def enqueue() -> None:
        try:
            _task_enqueue(retried.task_name, retried.args, retried.kwargs)
        except Exception as exc:
            # Nothing was queued: put the row back as open (unless it changed meanwhile).
            DeadLetter.objects.filter(
                pk=retried.pk, status=DeadLetter.Status.RETRIED, retry_count=retried.retry_count
            ).update(status=DeadLetter.Status.OPEN, updated_at=timezone.now())
            logger.exception("dead_letter.retry_enqueue_failed", dead_letter_id=retried.pk)
            raise DomainError(
                f"The task could not be queued ({type(exc).__name__}); it stays open.",
                code="enqueue_failed",
                status_code=503,
            ) from exc

    if transaction.get_connection().in_atomic_block:
        # The caller's transaction may still roll back: queue after it commits, and never
        # let a queueing failure break the caller's other after-commit work.
        transaction.on_commit(enqueue, robust=True)
    else:
        enqueue()
    logger.info("dead_letter.retried", dead_letter_id=retried.pk, actor=actor)
    return retried


def _task_enqueue(name: str, args: list, kwargs: dict) -> None:
    # A registered task goes through apply_async, which honours eager mode (the embedded
    # default has no broker); a task this process does not know is sent by name.
    task = current_app.tasks.get(name)
    if task is not None:
        task.apply_async(args=args, kwargs=kwargs)
    else:
        current_app.send_task(name, args=args, kwargs=kwargs)


def dead_letter_resolve(*, dead_letter: DeadLetter, actor: str, note: str) -> DeadLetter:
    """Close a dead letter by hand, saying why (refused if someone resolved it already)."""
    if not note.strip():
        raise DomainError("Say how it was resolved.", code="note_required")
    now = timezone.now()
    changed = (
        DeadLetter.objects.filter(pk=dead_letter.pk)
        .exclude(status=DeadLetter.Status.RESOLVED)
        .update(
            status=DeadLetter.Status.RESOLVED,
            resolved_by=actor,
            resolved_at=now,
            note=note.strip(),
            updated_at=now,
        )
    )
    if not changed:
        raise ConflictError("This dead letter is already resolved.", code="dead_letter_resolved")
    dead_letter.refresh_from_db()
    logger.info("dead_letter.resolved", dead_letter_id=dead_letter.pk, actor=actor)
    return dead_letter
