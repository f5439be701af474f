from django.core.management.base import BaseCommand

from inventory.models import StockLevel, StockMovement
from inventory.selectors import ledger_mismatches


class Command(BaseCommand):
    help = "Check that every stock level equals the sum of its ledger movements; exit 1 if not."

    def handle(self, *args, **options) -> None:
        mismatches = ledger_mismatches()
        levels = StockLevel.objects.count()
        movements = StockMovement.objects.count()
        for m in mismatches:
            self.stdout.write(
                f"MISMATCH level {m.level_id} {m.sku}@{m.warehouse}: "
                f"on_hand {m.on_hand} vs ledger {m.on_hand_from_ledger}, "
                f"reserved {m.reserved} vs ledger {m.reserved_from_ledger}"
            )
        if mismatches:
            self.stderr.write(
                f"ledger check FAILED: {len(mismatches):,} of {levels:,} levels differ from "
                f"their {movements:,} movements"
            )
            raise SystemExit(1)
        self.stdout.write(f"OK: {levels:,} levels match their {movements:,} movements")
