"""The configuration audit: one `AuditEvent` per change, written inside the change's transaction."""

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models, transaction

from core.actor import current_actor
from core.correlation import get_correlation_id
from core.models import AuditEvent

HIDDEN = "(hidden)"
CHANGED = "(changed)"


def audit_snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """Return the audited fields' current values (foreign keys by id), for a later diff."""
    snapshot: dict[str, Any] = {}
    for name in fields:
        field = obj._meta.get_field(name)
        attname = getattr(field, "attname", name)
        snapshot[name] = getattr(obj, attname)
    return snapshot


def audit_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    secret_fields: Iterable[str] = (),
) -> dict[str, list[Any]]:
    """Return `{field: [old, new]}` for each field that differs; secrets only say "changed"."""
    secret = set(secret_fields)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        changes[name] = [HIDDEN, CHANGED] if name in secret else [old, new]
    return changes


def audit_record(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    object_repr: str = "",
    changes: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Write one audit row for a configuration change; call inside the change's transaction.

    The actor defaults to whoever is behind the current request or block
    (`core.actor.current_actor`), the correlation id to the one bound now. Raises
    `TransactionManagementError` outside a transaction, so no caller can write the row in a
    separate one by mistake (a rolled-back change must leave no row).
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError(
            "audit_record() must run inside the transaction of the change it records"
        )
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    return AuditEvent.objects.create(
        actor=(actor or current_actor())[:150],
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:64],
        object_repr=object_repr[:200],
        changes=dict(changes or {}),
        correlation_id=get_correlation_id() or "",
    )
