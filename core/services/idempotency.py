"""Idempotency records: claim, complete, release, purge (Stripe's semantics)."""

from datetime import timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import ConflictError, DomainError
from core.models import IdempotencyRecord

logger = structlog.get_logger(__name__)


def idempotency_claim(
    *, owner: str, key: str, fingerprint: str, method: str, path: str
) -> tuple[IdempotencyRecord, bool]:
    """Claim an idempotency key inside the caller's transaction.

    Must run in the transaction that performs the request's effect and stores its response
    (`idempotency_complete`): the claim, the effect and the response commit together, in one
    commit, or not at all. Returns `(record, True)` when this request now owns the key and
    must execute, or `(record, False)` when a completed response exists to replay.

    A concurrent request with the same key blocks on the unique index (owner, key) until
    this transaction ends; it then replays the committed response, or claims the key itself
    if this transaction rolled back. So two requests with one key never both execute, and
    the second needs no "in progress" answer. Raises 422 `idempotency_key_reused` when the
    key came with another request. Expired records are taken over; so are claims committed
    as "in progress" (by an earlier release of this service) and older than the lock timeout.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("idempotency_claim must run inside the request's transaction")
    now = timezone.now()
    for _ in range(3):
        record = IdempotencyRecord(
            owner=owner,
            key=key,
            fingerprint=fingerprint,
            method=method,
            path=path[:500],
            expires_at=now + timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS),
        )
        if _insert_unless_taken(record):
            return record, True
        existing = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
        if existing is None:
            continue  # deleted meanwhile (purged or taken over): claim again
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


def _insert_unless_taken(record: IdempotencyRecord) -> bool:
    """INSERT the claim unless (owner, key) is taken; True when this call inserted it.

    `ON CONFLICT DO NOTHING` in one statement: no savepoint round trips, and the caller's
    transaction stays usable when the key is taken. On PostgreSQL a conflicting row whose
    transaction is still open makes this statement wait for that transaction's outcome.
    """
    connection = transaction.get_connection()
    meta = IdempotencyRecord._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    values = [
        field.get_db_prep_save(field.pre_save(record, add=True), connection=connection)
        for field in fields
    ]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) "
            f"ON CONFLICT ({quote('owner')}, {quote('key')}) DO NOTHING "
            f"RETURNING {quote(meta.pk.column)}",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return False
    record.pk = row[0]
    record._state.adding = False
    return True


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    """Store the response to replay (in the claim's transaction, with the effect)."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.COMPLETED,
        response_status=status,
        response_body=body,
        updated_at=timezone.now(),
    )


def idempotency_purge_expired(*, now: Any = None) -> int:
    """Delete records past their 24-hour life; return how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=now or timezone.now()).delete()
    if deleted:
        logger.info("idempotency.purged", deleted=deleted)
    return deleted
