"""Idempotency records: claim, complete, release, purge (Stripe's semantics)."""

from contextlib import nullcontext
from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ConflictError, DomainError
from core.models import IdempotencyRecord

logger = structlog.get_logger(__name__)


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
