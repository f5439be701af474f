"""Reads of webhook events: what the admin shows."""

import json
from datetime import datetime, timedelta

from django.db.models import Q

from webhooks.models import WebhookEvent
from webhooks.services.intake import TOPIC_ORDER

# A failed order event received this long before a stock observation (or after it) may be
# the sale behind it: the conflict's automatic resolution waits for a person meanwhile.
FAILED_ORDERS_HOLD = timedelta(days=3)

# The console shows this much of a body: a page must stay a page whatever was sent.
PREVIEW_LIMIT = 64 * 1024


def body_preview(body: bytes | memoryview, *, limit: int = PREVIEW_LIMIT) -> str:
    """A raw body as readable text: pretty JSON when it is JSON, else the text as sent.

    At most `limit` characters (a note says how much more there is). A body nested too
    deeply for the JSON reader (it raises `RecursionError`) is shown as sent.
    """
    raw = bytes(body)
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = raw.decode("utf-8", "replace")
    return _capped(text, limit)


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"


def orders_pending(channel_id: int, before: datetime) -> bool:
    """Whether the channel has order events that may hold a sale made before `before` and
    are not applied yet: any still to process (a poll stores the orders it could not apply
    when it runs, after the sale: their time says nothing), and those failed around then
    (dead-lettered; older failures no longer hold anything back)."""
    return (
        WebhookEvent.objects.filter(channel_id=channel_id, topic=TOPIC_ORDER)
        .filter(
            Q(status=WebhookEvent.Status.RECEIVED)
            | Q(
                status=WebhookEvent.Status.FAILED,
                received_at__gte=before - FAILED_ORDERS_HOLD,
            )
        )
        .exists()
    )
