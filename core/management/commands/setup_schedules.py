from django.core.management.base import BaseCommand

from core.schedules import schedules_collect, schedules_sync


class Command(BaseCommand):
    help = "Write the periodic schedules defined in code into django-celery-beat (idempotent)."

    def handle(self, *args, **options) -> None:
        counts = schedules_sync()
        for schedule in schedules_collect():
            when = (
                f"every {schedule.every_seconds} s"
                if schedule.every_seconds
                else f"cron '{schedule.crontab}' UTC"
            )
            self.stdout.write(f"  {schedule.full_name:<45} {schedule.task:<40} {when}")
        self.stdout.write(
            "schedules: " + ", ".join(f"{count} {name}" for name, count in counts.items())
        )
