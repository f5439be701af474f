import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper


def database_ensure(connection: BaseDatabaseWrapper | None = None) -> str | None:
    """Make sure the database answers; create a missing PostgreSQL database.

    Return a line saying what was created (None when nothing was), or raise `CommandError`
    with one line saying what to do, instead of the driver's traceback.
    """
    connection = connection or connections[DEFAULT_DB_ALIAS]
    db = connection.settings_dict
    host, user = db.get("HOST") or "localhost", db.get("USER") or "$USER"
    where = f"{db['NAME']} on {host}:{db.get('PORT') or 'default port'}"
    try:
        connection.ensure_connection()
        return None
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        missing = f'database "{db["NAME"]}" does not exist'
        if connection.vendor != "postgresql" or missing not in reason:
            raise CommandError(
                f"Cannot reach the database {where} ({reason}). Start it, or set DATABASE_URL "
                "(in the environment or .env) to a database that answers."
            ) from None
    # The server answers but the database is missing: create it from the maintenance
    # database, as Django's test runner does.
    try:
        with warnings.catch_warnings():
            # Django warns when it falls back from the `postgres` database: not news here.
            warnings.simplefilter("ignore", RuntimeWarning)
            with connection._nodb_cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(db['NAME'])}")
    except Exception as exc:  # the role may not be allowed to: say what to run instead
        reason = str(exc).strip().splitlines()[0]
        raise CommandError(
            f"The database {where} does not exist and could not be created ({reason}). "
            f"Create it: createdb -h {host} -U {user} {db['NAME']}"
        ) from None
    connection.close()
    return f"created the PostgreSQL database {where}"


def metrics_environment(environ: dict[str, str], *, web_workers: int) -> dict[str, str]:
    """Return gunicorn's environment, with an emptied PROMETHEUS_MULTIPROC_DIR for several
    workers (a fresh temporary directory when none is set), so /metrics sums them all."""
    environ = dict(environ)
    if web_workers < 2 and not environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return environ
    directory = environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="syncstore-metrics-"
    )
    # Files left by an earlier run would add its counts to this one's.
    shutil.rmtree(directory, ignore_errors=True)
    Path(directory).mkdir(parents=True, exist_ok=True)
    environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return environ


class Command(BaseCommand):
    help = (
        "Run SyncStore on this machine: migrate, write the beat schedules (and collect static "
        "files with DJANGO_STATIC_MANIFEST), then start gunicorn and, when a broker is "
        "configured, a Celery worker (all queues) and Celery beat. Ctrl-C stops them all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--bind", default="127.0.0.1:8000", help="Address of the web server (host:port)."
        )
        parser.add_argument("--web-workers", type=int, default=3)

    def handle(self, *args, **options) -> None:
        created = database_ensure()
        if created:
            self.stdout.write(created)
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
                "--config",
                str(settings.BASE_DIR / "config" / "gunicorn.py"),
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
        web_environment = metrics_environment(dict(os.environ), web_workers=options["web_workers"])
        environments = {"web": web_environment}
        processes = {
            name: subprocess.Popen(command, env=environments.get(name))  # noqa: S603
            for name, command in commands.items()
        }
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
        if "PROMETHEUS_MULTIPROC_DIR" in web_environment and not os.environ.get(
            "PROMETHEUS_MULTIPROC_DIR"
        ):
            shutil.rmtree(web_environment["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
