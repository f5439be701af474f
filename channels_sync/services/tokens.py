"""Marketplace tokens: refresh before expiry, store the new ones encrypted, flag re-auth.

A refresh is an outside call, so it runs outside any transaction; a cache lock per channel
makes sure only one process refreshes at a time (Shopee's refresh token is single use: two
processes refreshing with the same one would leave one of them holding a dead token).
"""

import time
import uuid

import structlog
from django.core.cache import cache
from django.utils import timezone

from channels_sync.adapters import Adapter, AdapterError, Outcome, adapter_class
from channels_sync.models import Channel
from core.services import alert_send

logger = structlog.get_logger(__name__)

TOKEN_LOCK_KEY = "channels_sync:token_lock:{channel_id}"
TOKEN_LOCK_SECONDS = 60


def channel_adapter(channel: Channel, *, timeout: float | None = None) -> Adapter:
    """The channel's adapter, holding its current credentials."""
    from django.conf import settings

    cls = adapter_class(channel.type)
    return cls(
        base_url=channel.base_url,
        auth_base_url=channel.auth_base_url,
        credentials=dict(channel.credentials or {}),
        options=dict(channel.options or {}),
        timeout=timeout if timeout is not None else settings.CHANNEL_HTTP_TIMEOUT_SECONDS,
    )


def channel_token_refresh(*, channel: Channel, adapter: Adapter, force: bool = False) -> bool:
    """Refresh the channel's access token if it is missing or near expiry (or `force`).

    Returns True when the adapter holds a usable token afterwards. A refused refresh marks
    the channel as needing re-authorisation (one alert) and returns False; a transport
    failure raises `AdapterError` (retryable) and changes nothing.
    """
    if not force and not adapter.token_needs_refresh():
        return True
    key = TOKEN_LOCK_KEY.format(channel_id=channel.pk)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + TOKEN_LOCK_SECONDS
    while not cache.add(key, token, timeout=TOKEN_LOCK_SECONDS):
        if time.monotonic() > deadline:
            raise AdapterError("another process holds the token refresh lock")
        time.sleep(0.2)
    try:
        # Another process may have refreshed while this one waited: use its tokens.
        stored = Channel.objects.only("credentials", "needs_reauth").get(pk=channel.pk)
        if stored.needs_reauth:
            return False
        current = dict(stored.credentials or {})
        if current.get("access_token") != adapter.credentials.get("access_token"):
            adapter.credentials = current
            if not adapter.token_needs_refresh():
                channel.credentials = current
                return True
        try:
            credentials = adapter.token_refresh()
        except AdapterError as exc:
            if exc.outcome == Outcome.AUTH:
                channel_mark_reauth(channel=channel, reason=f"token refresh refused: {exc}")
                return False
            raise
        expires = adapter.token_expires_at()
        Channel.objects.filter(pk=channel.pk).update(
            credentials=credentials, token_expires_at=expires, updated_at=timezone.now()
        )
        channel.credentials = credentials
        channel.token_expires_at = expires
        logger.info("channel.token_refreshed", channel_id=channel.pk, expires_at=str(expires))
        return True
    finally:
        if cache.get(key) == token:
            cache.delete(key)


def channel_mark_reauth(*, channel: Channel, reason: str) -> bool:
    """Flag the channel as needing re-authorisation and alert once; pushes stop until fixed.

    Returns True when this call raised the flag (and the alert).
    """
    changed = Channel.objects.filter(pk=channel.pk, needs_reauth=False).update(
        needs_reauth=True, reauth_reason=reason[:500], updated_at=timezone.now()
    )
    channel.needs_reauth = True
    channel.reauth_reason = reason[:500]
    if changed:
        logger.warning("channel.needs_reauth", channel_id=channel.pk, reason=reason)
        alert_send(
            title="Channel needs re-authorisation",
            text=f"{channel.name}: {reason}. Pushes to it are stopped until it is re-authorised.",
            key=f"channel_reauth:{channel.pk}",
            severity="critical",
            fields={"Channel": channel.name, "Type": channel.type},
        )
    return bool(changed)
