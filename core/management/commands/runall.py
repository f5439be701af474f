import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Run SyncStore on this machine: migrate, write the beat schedules (and collect static "
        "files with DJANGO_STATIC_MANIFEST), then start gunicorn and, when a broker is "
        "configured, a Celery worker (all queues) and Celery beat. Ctrl-C stops them all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=3)

    def handle(self, *args, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("setup_schedules", stdout=self.stdout)
        if settings.STATIC_MANIFEST:
            call_command("collectstatic", interactive=False, verbosity=0)
        python = sys.executable
        commands = {
            "web": [
                python,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                options["bind"],
                "--workers",
                str(options["web_workers"]),
                "--access-logfile",
                "-",
            ],
        }
        if settings.CELERY_TASK_ALWAYS_EAGER:
            self.stdout.write(
                "No CELERY_BROKER_URL: tasks run inline in the web process; no worker or beat."
            )
        else:
            commands["worker"] = [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                ",".join(settings.QUEUE_NAMES),
                "--loglevel",
                "INFO",
            ]
            commands["beat"] = [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
            ]
        processes = {name: subprocess.Popen(command) for name, command in commands.items()}  # noqa: S603
        self.stdout.write(
            f"started {', '.join(processes)}; http://{options['bind']}/admin/ and "
            f"http://{options['bind']}/api/docs/"
        )
        stopping = False

        def stop(*_args: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            exited = {name: p.poll() for name, p in processes.items() if p.poll() is not None}
            if exited:
                self.stderr.write(f"stopped unexpectedly: {exited}")
                break
            time.sleep(0.5)
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
