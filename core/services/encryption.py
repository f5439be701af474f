"""Encryption keys: re-encrypt stored values under the primary key."""

from dataclasses import dataclass

import structlog
from django.apps import apps
from django.db import transaction
from django.db.models import F, TextField
from django.db.models.functions import Cast

from core.crypto import DecryptionError, keyring, token_key_id
from core.fields import encrypted_fields

logger = structlog.get_logger(__name__)


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
