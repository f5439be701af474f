"""The Celery application: Django settings under CELERY_*, queues per concern."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("syncstore", task_cls="core.task_base:BaseTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Connects the signal receivers that carry correlation ids through task headers.
import core.correlation  # noqa: E402, F401


@signals.worker_init.connect
@signals.beat_init.connect
def _refuse_unsafe_secrets(**_kwargs: object) -> None:
    """Stop a worker or beat that starts with placeholder secrets (Celery runs no checks).

    Celery logs and swallows a receiver's exceptions, so the refusal is a `SystemExit`, which
    it lets through: the process ends with the message and status 1.
    """
    from django.core.exceptions import ImproperlyConfigured

    from core.checks import secrets_refuse_unsafe

    try:
        secrets_refuse_unsafe()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"SyncStore refuses to start: {exc}") from exc
