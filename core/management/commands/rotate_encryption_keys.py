from django.core.management.base import BaseCommand

from core.crypto import generate_key, keyring
from core.services import encryption_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field with the first key of FIELD_ENCRYPTION_KEYS. "
        "To rotate: put a new key first (keep the old ones after it), run this, then drop "
        "the old keys. Exits 1 if some value cannot be decrypted with any configured key."
    )
    # `--generate-key` is how a new set-up replaces the placeholder key that the checks
    # refuse, so the checks run only before a rotation.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count, change nothing.")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--generate-key", action="store_true", help="Print a new random key and exit."
        )

    def handle(self, *args, **options) -> None:
        if options["generate_key"]:
            self.stdout.write(generate_key())
            return
        self.check()
        self.stdout.write(f"primary key id: {keyring().primary_key_id}")
        results = encryption_keys_rotate(
            dry_run=options["dry_run"], batch_size=options["batch_size"]
        )
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        for result in results:
            self.stdout.write(
                f"  {result.label}: {result.values} values, {verb} {result.rotated}, "
                f"{result.current} already current, {result.unreadable} unreadable"
            )
        if not results:
            self.stdout.write("  no model has encrypted fields yet")
        if any(result.unreadable for result in results):
            self.stderr.write("some values could not be decrypted with any configured key")
            raise SystemExit(1)
