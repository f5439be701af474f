"""The base class of every SyncStore Celery task: final failures go to the dead-letter queue."""

import random

import structlog
from celery import Task

logger = structlog.get_logger(__name__)


def backoff_seconds(retries: int, *, base: float = 5.0, cap: float = 900.0) -> float:
    """Exponential backoff with full jitter: a random delay up to base * 2**retries."""
    ceiling = min(cap, base * (2**retries))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


class BaseTask(Task):
    """A task whose last failure (after its retries) is recorded as a `DeadLetter`."""

    # Which subsystem gave up, as shown in the dead-letter console.
    dead_letter_source = ""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from core.services import dead_letter_record

        try:
            dead_letter_record(
                source=self.dead_letter_source or self.name.split(".", 1)[0],
                task_name=self.name,
                args=list(args or ()),
                kwargs=dict(kwargs or {}),
                error=exc,
                attempts=self.request.retries + 1,
                task_id=task_id or "",
            )
        except Exception:
            # The database may be what failed; the log keeps the job's details then.
            logger.exception(
                "dead_letter.record_failed", task_name=self.name, args=args, kwargs=kwargs
            )
        super().on_failure(exc, task_id, args, kwargs, einfo)
