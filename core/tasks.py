"""Core Celery tasks (thin shells over services)."""

import structlog
from celery import shared_task
from django.conf import settings

from core.http import OutboundError, http_session
from core.task_base import backoff_seconds

logger = structlog.get_logger(__name__)


class AlertRejected(Exception):
    """Slack refused the message for good (bad payload, unknown or archived webhook)."""


@shared_task(name="core.alert_post", bind=True, max_retries=6, dead_letter_source="alerts")
def alert_post(self, payload: dict) -> None:
    """Post an alert to the Slack incoming webhook.

    Retries transport failures, 429 (after Slack's Retry-After) and 5xx with backoff; a 4xx
    answer is final. The last failure lands in the dead-letter queue. Run inline (eager, the
    embedded default), a failure goes to the dead-letter queue at once: retrying there would
    hold up the caller.
    """
    url = settings.SLACK_WEBHOOK_URL
    if not url:
        return
    base = settings.ALERT_RETRY_BACKOFF_SECONDS

    def retry(exc: Exception, countdown: float) -> Exception:
        if self.request.is_eager:
            return exc
        return self.retry(exc=exc, countdown=countdown)

    try:
        # The webhook URL is the credential: it never reaches a log line or a dead letter.
        response = http_session().post(url, json=payload, secret_path=True)
    except OutboundError as exc:
        raise retry(exc, backoff_seconds(self.request.retries, base=base)) from exc
    if response.status_code == 429:
        wait = float(response.headers.get("Retry-After") or backoff_seconds(0, base=base))
        raise retry(AlertRejected("slack answered 429 rate_limited"), wait)
    if response.status_code >= 500:
        exc = AlertRejected(f"slack answered {response.status_code}: {response.text[:200]}")
        raise retry(exc, backoff_seconds(self.request.retries, base=base))
    if response.status_code >= 400:
        raise AlertRejected(f"slack answered {response.status_code}: {response.text[:200]}")
    logger.info("alert.posted", status=response.status_code)


@shared_task(name="core.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    """Delete idempotency records older than their 24-hour life."""
    from core.services.idempotency import idempotency_purge_expired

    return idempotency_purge_expired()
