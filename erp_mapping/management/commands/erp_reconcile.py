from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from erp_mapping.models import ReconciliationEvent
from erp_mapping.services.reconcile import erp_reconcile
from inventory.selectors import vendor_get


class Command(BaseCommand):
    help = (
        "Reconcile a vendor's stock with its ERP now (through its agent) and print the "
        "event's figures. Exit 0 when it completed or was skipped, 1 when it failed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--vendor", help="Vendor UUID (the default vendor when omitted).")

    def handle(self, *args, **options) -> None:
        try:
            vendor = vendor_get(options["vendor"])
            event = erp_reconcile(vendor=vendor, trigger=ReconciliationEvent.Trigger.COMMAND)
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(event_report(event))
        if event.status == ReconciliationEvent.Status.FAILED:
            raise CommandError(
                f"reconciliation {event.pk} failed: {event.error_message}", returncode=1
            )


def event_report(event: ReconciliationEvent) -> str:
    """The event's figures, one per line."""
    details = event.details or {}
    share = event.rows_fetched / event.skus_local * 100 if event.skus_local else 0.0
    lines = [
        f"reconciliation {event.pk} of vendor {event.vendor}: {event.status}",
        f"  stock rows here  {event.skus_local}",
        f"  ranges compared  {event.ranges_compared} ({event.ranges_differing} differing, "
        f"{len(details.get('levels', []))} levels, {details.get('leaf_count', 0)} fetched)",
        f"  agent requests   {event.requests}",
        f"  rows fetched     {event.rows_fetched} ({share:.2f}% of the rows here)",
        f"  drift found      {event.drift_found}",
        f"  drift fixed      {event.drift_fixed}",
        f"  duration         {event.duration_ms if event.duration_ms is not None else '-'} ms",
    ]
    extras = {
        "unknown SKUs": details.get("unknown_sku_count", 0),
        "unknown warehouses": len(details.get("unknown_warehouses", [])),
        "changed here meanwhile": len(details.get("changed_meanwhile", [])),
        "waiting for orders to reach the ERP": details.get("awaiting_erp_count", 0),
        "shipped orders never sent to the ERP": details.get("orders_not_sent_count", 0),
        "invalid ERP rows": sum(details.get("invalid_rows", {}).values()),
    }
    for label, count in extras.items():
        if count:
            lines.append(f"  {label:<16} {count}")
    if event.error_message:
        lines.append(f"  error            {event.error_code}: {event.error_message}")
    return "\n".join(lines)
