"""Reads of webhook events: what the sweep re-queues, what the admin shows."""

import json
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from webhooks.models import WebhookEvent


def events_stuck(*, grace: timedelta, limit: int = 1000) -> list[int]:
    """Events left `received` past the grace, not held by a worker nor waiting for a retry.

    A crash between the commit and the enqueue (or a queue outage) leaves such events.
    """
    now = timezone.now()
    cutoff = now - grace
    return list(
        WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED, received_at__lt=cutoff)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=cutoff))
        .order_by("received_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def body_preview(body: bytes | memoryview) -> str:
    """A raw body as readable text: pretty JSON when it is JSON, else the text as sent."""
    raw = bytes(body)
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")
