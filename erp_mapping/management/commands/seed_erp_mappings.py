import json
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from erp_mapping.serializers.mappings import convex_rows_convert, mapping_rows_parse
from erp_mapping.services.mappings import SeedCounts, mappings_seed

_COLUMNS = ["created", "updated", "unchanged", "skipped", "invalid"]


class Command(BaseCommand):
    help = (
        "Import ERP code mappings from a legacy Convex export (a JSON list like "
        "erp_mapping/data/item-mapping.json): validate each row, upsert per vendor, print "
        "the counts per type. Bad rows are listed on stderr and never stop the others."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="The export file (JSON).")
        parser.add_argument(
            "--vendor",
            help="Import only this vendor's rows (a UUID); every vendor in the file otherwise.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Compute the counts and write nothing."
        )
        parser.add_argument(
            "--include-empty",
            action="store_true",
            help="Import the unit row with an empty erpCode as the vendor's fallback unit "
            "(skipped otherwise).",
        )

    def handle(self, *args, **options) -> None:
        only_vendor = None
        if options["vendor"]:
            try:
                only_vendor = uuid.UUID(options["vendor"])
            except ValueError as exc:
                raise CommandError(f"--vendor is not a UUID: {options['vendor']}") from exc
        try:
            data = json.loads(Path(options["path"]).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(f"Cannot read {options['path']}: {exc}") from exc
        if not isinstance(data, list):
            raise CommandError(f"{options['path']} must hold a JSON list of mappings.")
        rows, invalid = mapping_rows_parse(convex_rows_convert(data), only_vendor=only_vendor)
        if only_vendor and not rows and not invalid:
            raise CommandError(f"{options['path']} has no rows of vendor {only_vendor}.")
        result = mappings_seed(
            rows=rows,
            invalid=invalid,
            include_empty=options["include_empty"],
            dry_run=options["dry_run"],
            actor="manage.py seed_erp_mappings",
        )
        for error in result.invalid:
            self.stderr.write(f"row {error.index}: {error.field}: {error.code}: {error.message}")
        if result.dry_run:
            self.stdout.write("Dry run: nothing was written.")
        for vendor in result.vendors:
            created = " (new vendor)" if vendor.created else ""
            self.stdout.write(f"Vendor {vendor.id} {vendor.name}{created}")
        self.stdout.write(f"{'type':<10}" + "".join(f"{name:>11}" for name in _COLUMNS))
        for name, counts in [*result.by_type.items(), ("total", result.totals)]:
            self.stdout.write(self._line(name, counts))
        self.stdout.write(f"mappings (created + updated + unchanged): {result.totals.mappings}")

    @staticmethod
    def _line(name: str, counts: SeedCounts) -> str:
        figures = counts.as_dict()
        return f"{name:<10}" + "".join(f"{figures[column]:>11}" for column in _COLUMNS)
