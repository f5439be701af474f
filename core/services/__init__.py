"""Writes of the core, one module per subdomain: API keys, idempotency records, dead letters,
alerts and encryption keys. The names are re-exported here for callers' convenience."""

from core.services.alerts import alert_send, slack_payload
from core.services.api_keys import CreatedApiKey, api_key_create, api_key_revoke, api_key_update
from core.services.audit import audit_changes, audit_record, audit_snapshot
from core.services.dead_letters import dead_letter_record, dead_letter_resolve, dead_letter_retry
from core.services.encryption import RotationResult, encryption_keys_rotate
from core.services.idempotency import (
    idempotency_claim,
    idempotency_complete,
    idempotency_purge_expired,
)

__all__ = [
    "CreatedApiKey",
    "RotationResult",
    "alert_send",
    "api_key_create",
    "api_key_revoke",
    "api_key_update",
    "audit_changes",
    "audit_record",
    "audit_snapshot",
    "dead_letter_record",
    "dead_letter_resolve",
    "dead_letter_retry",
    "encryption_keys_rotate",
    "idempotency_claim",
    "idempotency_complete",
    "idempotency_purge_expired",
    "slack_payload",
]
