from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from core.schedules import schedules_collect, schedules_sync


class Command(BaseCommand):
    help = "Write the periodic schedules defined in code into django-celery-beat (idempotent)."

    def handle(self, *args, **options) -> None:
        try:
            counts = schedules_sync()  # one transaction: a refused schedule writes nothing
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        for schedule in schedules_collect():
            seconds = schedule.interval_seconds
            when = f"every {seconds} s" if seconds else f"cron '{schedule.crontab}' UTC"
            self.stdout.write(f"  {schedule.full_name:<45} {schedule.task:<40} {when}")
        self.stdout.write(
            "schedules: " + ", ".join(f"{count} {name}" for name, count in counts.items())
        )
