"""Periodic schedules defined in code and written into django-celery-beat.

Each app lists its schedules in `<app>/schedules.py` as `SCHEDULES`; `manage.py
setup_schedules` writes them all (idempotent) and disables any `syncstore:` schedule that
is no longer in code. Beat (DatabaseScheduler) then runs them.
"""

import json
from dataclasses import dataclass

import structlog
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils.module_loading import import_string, module_has_submodule

logger = structlog.get_logger(__name__)

NAME_PREFIX = "syncstore: "


@dataclass(frozen=True)
class Schedule:
    """A periodic task: every N seconds, or a crontab (`minute hour day month weekday`, UTC)."""

    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None
    queue: str | None = None
    # Every this setting's seconds, read when the schedules are written (never when the
    # app's schedules module is imported): an interval the deployment configures.
    every_setting: str | None = None

    @property
    def full_name(self) -> str:
        return f"{NAME_PREFIX}{self.name}"

    @property
    def interval_seconds(self) -> int | None:
        """The interval in seconds (None for a crontab).

        An interval setting of zero or less is refused (`ImproperlyConfigured`, naming the
        setting) rather than read as "disabled": every such schedule is a safety net (the
        order poll catches lost webhooks), and switching one off belongs in the beat console,
        on purpose, not in a number that slipped to 0.
        """
        if self.every_setting:
            from django.conf import settings

            value = getattr(settings, self.every_setting)
            try:
                seconds = int(value)
            except (TypeError, ValueError):
                seconds = 0
            if seconds <= 0:
                raise ImproperlyConfigured(
                    f"{self.every_setting} must be a positive number of seconds "
                    f"(schedule {self.name!r}); got {value!r}."
                )
            return seconds
        return self.every_seconds


def schedules_collect() -> list[Schedule]:
    """Every app's `SCHEDULES`, in app order."""
    found: list[Schedule] = []
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "schedules") and config.name != "core":
            found.extend(import_string(f"{config.name}.schedules.SCHEDULES"))
    found.extend(SCHEDULES)
    return found


def schedules_sync() -> dict[str, int]:
    """Write the code's schedules into django-celery-beat; return counts."""
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
    )

    counts = {"created": 0, "updated": 0, "unchanged": 0, "disabled": 0}
    wanted = schedules_collect()
    with transaction.atomic():
        for schedule in wanted:
            defaults: dict = {
                "task": schedule.task,
                "description": schedule.description,
                "queue": schedule.queue,
                "enabled": True,
                "kwargs": json.dumps({}),
                "interval": None,
                "crontab": None,
            }
            if schedule.interval_seconds:
                defaults["interval"], _ = IntervalSchedule.objects.get_or_create(
                    every=schedule.interval_seconds, period=IntervalSchedule.SECONDS
                )
            else:
                minute, hour, day, month, weekday = schedule.crontab.split()
                defaults["crontab"], _ = CrontabSchedule.objects.get_or_create(
                    minute=minute,
                    hour=hour,
                    day_of_month=day,
                    month_of_year=month,
                    day_of_week=weekday,
                    timezone="UTC",
                )
            task = PeriodicTask.objects.filter(name=schedule.full_name).first()
            if task is None:
                PeriodicTask.objects.create(name=schedule.full_name, **defaults)
                counts["created"] += 1
                continue
            changed = [key for key, value in defaults.items() if getattr(task, key) != value]
            if changed:
                for key in changed:
                    setattr(task, key, defaults[key])
                task.save()
                counts["updated"] += 1
            else:
                counts["unchanged"] += 1
        stale = PeriodicTask.objects.filter(name__startswith=NAME_PREFIX, enabled=True).exclude(
            name__in=[schedule.full_name for schedule in wanted]
        )
        for task in stale:
            task.enabled = False
            task.save()
            counts["disabled"] += 1
    logger.info("schedules.synced", **counts)
    return counts


# The core's own schedules.
SCHEDULES = [
    Schedule(
        name="purge idempotency keys",
        task="core.purge_idempotency_keys",
        description="Hourly, at minute 17: delete Idempotency-Key records past 24 hours.",
        crontab="17 * * * *",
    ),
]
