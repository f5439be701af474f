"""Writes of the core: API keys, idempotency records, dead letters, alerts."""

import hashlib
import json
import traceback as tb
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.auth import SCOPES, api_key_generate, api_key_refresh
from core.correlation import get_correlation_id
from core.errors import ConflictError, DomainError
from core.metrics import ALERTS, DEAD_LETTERS
from core.models import ApiKey, DeadLetter, IdempotencyRecord

logger = structlog.get_logger(__name__)


# --- API keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # the full key: shown once, never stored


def _scopes_check(scopes: list[str]) -> None:
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        raise DomainError(
            f"Unknown or missing scopes: {', '.join(unknown) or 'none given'}.",
            code="invalid_scopes",
            details={"allowed": sorted(SCOPES)},
        )


def api_key_create(
    *,
    name: str,
    scopes: list[str],
    created_by: str = "",
    rate_limit_per_minute: int | None = None,
) -> CreatedApiKey:
    """Create an API key; the full key is returned here and nowhere else."""
    _scopes_check(scopes)
    key, prefix, key_hash = api_key_generate()
    api_key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        scopes=sorted(set(scopes)),
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    api_key_refresh(prefix)  # a lookup of this prefix before it existed may be cached
    logger.info("api_key.created", key_name=name, prefix=prefix, scopes=api_key.scopes)
    return CreatedApiKey(api_key=api_key, key=key)


def api_key_update(
    *, api_key: ApiKey, name: str, scopes: list[str], rate_limit_per_minute: int | None
) -> ApiKey:
    """Rename a key or change its scopes or rate limit (takes effect on the next request)."""
    _scopes_check(scopes)
    api_key.name = name
    api_key.scopes = sorted(set(scopes))
    api_key.rate_limit_per_minute = rate_limit_per_minute
    api_key.save(update_fields=["name", "scopes", "rate_limit_per_minute", "updated_at"])
    api_key_refresh(api_key.prefix)
    logger.info("api_key.updated", key_name=name, prefix=api_key.prefix, scopes=api_key.scopes)
    return api_key


def api_key_revoke(*, api_key: ApiKey, revoked_by: str = "") -> ApiKey:
    """Revoke a key at once (idempotent: a revoked key keeps its first revocation)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.revoked_by = revoked_by
        api_key.save(update_fields=["revoked_at", "revoked_by", "updated_at"])
        api_key_refresh(api_key.prefix)
        logger.info("api_key.revoked", key_name=api_key.name, prefix=api_key.prefix)
    return api_key


# --- Idempotency keys ----------------------------------------------------------------------


def idempotency_begin(
    *, owner: str, key: str, fingerprint: str, method: str, path: str
) -> tuple[IdempotencyRecord, bool]:
    """Claim an idempotency key for a request.

    Returns `(record, True)` when this request now owns the key and must execute, or
    `(record, False)` when a completed response exists to replay. Raises 422
    `idempotency_key_reused` when the key came with another request, and 409
    `idempotency_key_in_progress` while the first request still runs. The claim is
    committed at once (the unique constraint on owner and key arbitrates concurrent
    requests); expired records and claims older than the lock timeout are taken over.
    """
    now = timezone.now()
    for _ in range(3):
        try:
            # A single INSERT in autocommit (no BEGIN/COMMIT round trips); a savepoint only
            # when called inside a transaction, so a duplicate cannot spoil it.
            with (
                transaction.atomic()
                if transaction.get_connection().in_atomic_block
                else nullcontext()
            ):
                record = IdempotencyRecord.objects.create(
                    owner=owner,
                    key=key,
                    fingerprint=fingerprint,
                    method=method,
                    path=path[:500],
                    expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS),
                )
            return record, True
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
        if existing is None:
            continue  # released meanwhile: claim again
        stale_lock = now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT_SECONDS)
        if existing.expires_at <= now or (
            existing.status == IdempotencyRecord.Status.IN_PROGRESS
            and existing.updated_at < stale_lock
        ):
            IdempotencyRecord.objects.filter(
                pk=existing.pk, updated_at=existing.updated_at
            ).delete()
            continue
        if existing.fingerprint != fingerprint:
            raise DomainError(
                "This Idempotency-Key was used with a different request.",
                code="idempotency_key_reused",
                status_code=422,
                details={"idempotency_key": key},
            )
        if existing.status == IdempotencyRecord.Status.IN_PROGRESS:
            raise ConflictError(
                "A request with this Idempotency-Key is still being processed.",
                code="idempotency_key_in_progress",
                details={"idempotency_key": key},
            )
        return existing, False
    raise ConflictError(
        "Could not claim this Idempotency-Key; retry.",
        code="idempotency_key_in_progress",
        details={"idempotency_key": key},
    )


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Store the response to replay (in the caller's transaction, with its writes)."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=status,
        response_body=body,
        updated_at=timezone.now(),
    )


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Give the key back (the request did not execute), so a retry may use it."""
    IdempotencyRecord.objects.filter(
        pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS
    ).delete()


def idempotency_purge_expired(*, now: Any = None) -> int:
    """Delete records past their 24-hour life; return how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    if deleted:
        logger.info("idempotency.purged", deleted=deleted)
    return deleted


# --- Dead-letter queue -----------------------------------------------------------------------


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


# --- Alerts ---------------------------------------------------------------------------------


def alert_send(
    *,
    title: str,
    text: str,
    key: str | None = None,
    severity: str = "warning",
    fields: dict[str, Any] | None = None,
) -> None:
    """Raise an alert: always logged, posted to Slack when `SLACK_WEBHOOK_URL` is set.

    Runs after the current transaction commits (at once outside one), so a change that
    rolls back raises nothing, and a failure here never fails the committed change.
    Identical alerts (same `key`, or same title and text) within `ALERT_SUPPRESSION_SECONDS`
    are sent once across all processes (an atomic cache add). The Slack post is a task.
    """
    transaction.on_commit(
        lambda: _alert_raise(
            title=title, text=text, key=key, severity=severity, fields=fields or {}
        ),
        robust=True,
    )


def _alert_raise(
    *, title: str, text: str, key: str | None, severity: str, fields: dict[str, Any]
) -> None:
    from core.tasks import alert_post  # the tasks module imports this one

    suppression_key = "alert:" + hashlib.sha256((key or f"{title}\n{text}").encode()).hexdigest()
    if not cache.add(suppression_key, 1, timeout=settings.ALERT_SUPPRESSION_SECONDS):
        ALERTS.labels("suppressed").inc()
        logger.info("alert.suppressed", title=title, alert_key=key)
        return
    ALERTS.labels("raised").inc()
    logger.warning("alert.raised", title=title, text=text, severity=severity, alert_key=key)
    if not settings.SLACK_WEBHOOK_URL:
        return
    payload = slack_payload(title=title, text=text, severity=severity, fields=fields)
    try:
        alert_post.delay(payload)
    except Exception:
        # The broker is down: say so, and let the next identical alert try again.
        cache.delete(suppression_key)
        ALERTS.labels("enqueue_failed").inc()
        logger.exception("alert.enqueue_failed", title=title, alert_key=key)


_SEVERITY_ICON = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}


def slack_payload(*, title: str, text: str, severity: str, fields: dict[str, Any]) -> dict:
    """Build a Slack incoming-webhook message (text fallback plus Block Kit blocks)."""
    icon = _SEVERITY_ICON.get(severity, ":warning:")
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{title}*\n{text}"}},
    ]
    if fields:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
                    for name, value in list(fields.items())[:10]
                ],
            }
        )
    cid = get_correlation_id()
    if cid:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"correlation id `{cid}`"}]}
        )
    return {"text": f"{title}: {text}", "blocks": blocks}


# --- Encryption keys ---------------------------------------------------------------------------


@dataclass
class RotationResult:
    label: str
    values: int = 0
    rotated: int = 0
    current: int = 0
    unreadable: int = 0


def encryption_keys_rotate(*, dry_run: bool = False, batch_size: int = 500) -> list[RotationResult]:
    """Re-encrypt every encrypted value not under the primary key.

    Walks each model with encrypted fields in primary-key batches; each batch is locked
    (`SELECT ... FOR UPDATE`) while its values are re-encrypted, so a concurrent edit is
    never overwritten with a stale value. Values no configured key can open are counted as
    unreadable and left alone.
    """
    from django.apps import apps
    from django.db.models import F, TextField
    from django.db.models.functions import Cast

    from core.crypto import DecryptionError, keyring, token_key_id
    from core.fields import encrypted_fields

    ring = keyring()
    results = []
    for model in apps.get_models():
        fields = encrypted_fields(model)
        if not fields:
            continue
        raw = {f"raw_{field.attname}": Cast(F(field.attname), TextField()) for field in fields}
        for field in fields:
            result = RotationResult(label=f"{model._meta.label}.{field.name}")
            results.append(result)
            last_pk = None
            while True:
                with transaction.atomic():
                    batch = model._default_manager.order_by("pk").annotate(**raw)
                    if last_pk is not None:
                        batch = batch.filter(pk__gt=last_pk)
                    rows = list(
                        batch.select_for_update()
                        .filter(**{f"{field.attname}__isnull": False})
                        .values_list("pk", f"raw_{field.attname}")[:batch_size]
                    )
                    if not rows:
                        break
                    last_pk = rows[-1][0]
                    for pk, token in rows:
                        result.values += 1
                        try:
                            if token_key_id(token) == ring.primary_key_id:
                                result.current += 1
                                continue
                            plaintext = ring.decrypt(token)
                        except DecryptionError:
                            result.unreadable += 1
                            continue
                        result.rotated += 1
                        if not dry_run:
                            value = field.decode_value(plaintext.decode("utf-8"))
                            model._default_manager.filter(pk=pk).update(**{field.attname: value})
            logger.info(
                "encryption.rotated",
                field=result.label,
                values=result.values,
                rotated=result.rotated,
                unreadable=result.unreadable,
                dry_run=dry_run,
            )
    return results
