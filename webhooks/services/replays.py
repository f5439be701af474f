"""The replay check of signed webhook requests (`Adapter.webhook_nonce`).

A verified request's nonce is remembered `webhook_nonce_seconds` in the shared cache. The
same signed request received again is a replay, and it is answered from the event store,
not refused: when the channel holds the event it carries, it gets the duplicate
acknowledgement (nothing stored or queued again); when it does not, the first delivery
never stored it (its worker stopped between claiming the nonce and the INSERT, or it is
still storing it), so the request is taken like a first delivery and the INSERT ... ON
CONFLICT keeps the event once. A replay can therefore never lose an event nor store one
twice, and it costs one indexed lookup. With the cache down the nonce is not remembered:
the signature's time window and the event-key deduplication still hold.
"""

import hashlib
from collections.abc import Mapping

import structlog
from django.core.cache import cache

from channels_sync.adapters import Adapter
from core.cache import CACHE_ERRORS, cache_degraded
from webhooks.models import WebhookEvent

logger = structlog.get_logger(__name__)

# A verified request's nonce, remembered against replays.
NONCE_KEY = "webhooks:nonce:{channel_id}:{digest}"


def nonce_claim(
    *, channel_id: int, adapter: Adapter, headers: Mapping[str, str], body: bytes
) -> tuple[str | None, bool]:
    """Remember a verified request's nonce (where its type has one). Returns the cache key
    claimed (None: nothing claimed) and whether the nonce was seen within
    `webhook_nonce_seconds` (a replay). Never raises for the cache (logged and counted)."""
    nonce = adapter.webhook_nonce(headers=dict(headers), body=body)
    if not nonce:
        return None, False
    digest = hashlib.sha256(nonce.encode("utf-8", "replace")).hexdigest()
    key = NONCE_KEY.format(channel_id=channel_id, digest=digest)
    try:
        fresh = cache.add(key, 1, timeout=adapter.webhook_nonce_seconds)
    except CACHE_ERRORS as exc:
        cache_degraded("webhook_nonce", exc)
        return None, False
    return (key, False) if fresh else (None, True)


def nonce_release(key: str | None) -> None:
    """Forget a claimed nonce (its event was not stored: the same request must be taken)."""
    if key is None:
        return
    try:
        cache.delete(key)
    except CACHE_ERRORS as exc:
        cache_degraded("webhook_nonce", exc)


def replay_stored(*, channel_id: int, event_key: str) -> bool:
    """Whether the event a replayed request carries is stored (see the module)."""
    return WebhookEvent.objects.filter(channel_id=channel_id, event_key=event_key).exists()
