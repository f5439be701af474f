import time
from contextlib import ExitStack
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.test.utils import override_settings
from django.utils.module_loading import autodiscover_modules

from core.demo import DemoContext, demo_run
from core.logging import json_handler


class Command(BaseCommand):
    help = (
        "Run the demo: seed a catalogue and stock, run a stream of stock operations through "
        "the services, check the ledger, and print what happened."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--products", type=int, default=2000, help="Products to seed.")
        parser.add_argument(
            "--operations", type=int, default=3000, help="Stock operations in the stream."
        )
        parser.add_argument("--seed", type=int, default=42, help="Random seed.")
        parser.add_argument(
            "--log-file",
            default="var/demo.jsonl",
            help="Where the run's JSON log lines go ('-': standard error as usual).",
        )

    def _logs_to_file(self, stack: ExitStack, path: str) -> Path | None:
        """Send the JSON log lines to a file for the run, so the summary reads cleanly."""
        handler = json_handler()
        if path == "-" or handler is None:
            return None
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = stack.enter_context(target.open("w", encoding="utf-8"))
        previous = handler.setStream(stream)
        stack.callback(handler.setStream, previous)
        return target

    def handle(self, *args, **options) -> None:
        autodiscover_modules("demo")
        database = settings.DATABASES["default"]
        celery = "eager Celery" if settings.CELERY_TASK_ALWAYS_EAGER else "Celery workers"
        self.stdout.write(
            f"SyncStore demo on {database['ENGINE'].rsplit('.', 1)[-1]} "
            f"({database['NAME']}), {celery}, built-in sandboxes"
        )
        started = time.perf_counter()
        with ExitStack() as stack:
            log_path = self._logs_to_file(stack, options["log_file"])
            # The steps call the API in process with Django's test client, whose host is
            # `testserver`: answer it whatever DJANGO_ALLOWED_HOSTS (or `.env`) says.
            hosts = [*settings.ALLOWED_HOSTS, "testserver"]
            stack.enter_context(override_settings(ALLOWED_HOSTS=hosts))
            ctx = DemoContext(stdout=self.stdout, stack=stack, options=options)
            demo_run(ctx)
        key = ctx.facts.get("api_key", "<key>")
        self.stdout.write(f"\nDone in {time.perf_counter() - started:.1f} s.")
        if log_path:
            self.stdout.write(f"The run's JSON log lines are in {log_path}.")
        self.stdout.write(
            "Next: `make run`, then open http://127.0.0.1:8000/admin/ "
            "(create a user with `.venv/bin/python manage.py createsuperuser`) "
            "and http://127.0.0.1:8000/api/docs/, or:"
        )
        sku = ctx.facts.get("sample_sku", "SKU")
        self.stdout.write(
            f"  curl -H 'X-API-Key: {key}' http://127.0.0.1:8000/api/v1/stock-levels/{sku}/"
        )
