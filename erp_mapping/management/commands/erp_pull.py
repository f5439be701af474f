from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from erp_mapping.models import SyncRun
from erp_mapping.services.pull import erp_pull_run
from inventory.selectors import vendor_get


class Command(BaseCommand):
    help = (
        "Pull stock counts from a vendor's ERP now and print the run's figures. "
        "Exit 0 when the run completed or was skipped, 1 when it failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--vendor", help="Vendor UUID (the default vendor when omitted).")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Fetch and parse; report what would change; write only the run record.",
        )

    def handle(self, *args, **options) -> None:
        try:
            vendor = vendor_get(options["vendor"])
            run = erp_pull_run(
                vendor=vendor, trigger=SyncRun.Trigger.COMMAND, dry_run=options["dry_run"]
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(run_report(run))
        if run.status == SyncRun.Status.FAILED:
            raise CommandError(f"pull {run.pk} failed: {run.error_message}", returncode=1)


def run_report(run: SyncRun) -> str:
    """The run's figures, one per line."""
    details = run.details or {}
    lines = [
        f"run {run.pk} of vendor {run.vendor}: {run.status}{' (dry run)' if run.dry_run else ''}",
        f"  SKUs processed   {run.skus_processed}",
        f"  items {'to change' if run.dry_run else 'changed'}    {run.items_changed}"
        f"  (levels {details.get('levels_changed', 0)}, "
        f"new levels {details.get('levels_created', 0)}, "
        f"discontinued {details.get('discontinued_changed', 0)})",
        f"  invalid rows     {run.invalid_rows}  {details.get('invalid_by_code') or ''}",
        f"  unknown SKUs     {run.unknown_skus}",
        f"  attempts         {run.attempts}",
        f"  API latency      {run.api_latency_ms if run.api_latency_ms is not None else '-'} ms",
        f"  duration         {run.duration_ms if run.duration_ms is not None else '-'} ms",
        f"  received         {run.bytes_received} bytes",
        f"  archive          {run.archive_path or '-'}",
    ]
    if run.error_message:
        lines.append(f"  error            {run.error_message}")
    return "\n".join(lines)
