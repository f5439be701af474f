"""Alerts: logged always, posted to Slack (through a task) when configured."""

import contextlib
import hashlib
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from core.cache import CACHE_ERRORS, cache_degraded
from core.correlation import get_correlation_id
from core.metrics import ALERTS
from core.tasks import alert_post

logger = structlog.get_logger(__name__)


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
    are sent once across all processes (an atomic cache add; with the cache down, nothing
    is suppressed). The Slack post is a task.
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
    suppression_key = "alert:" + hashlib.sha256((key or f"{title}\n{text}").encode()).hexdigest()
    try:
        first = cache.add(suppression_key, 1, timeout=settings.ALERT_SUPPRESSION_SECONDS)
    except CACHE_ERRORS as exc:
        # Without the cache nothing is suppressed: an alert sent twice beats one lost.
        cache_degraded("alert_suppression", exc)
        first = True
    if not first:
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
        with contextlib.suppress(*CACHE_ERRORS):
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
