from django.core.management.base import BaseCommand, CommandError

from core.errors import DomainError
from core.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, alone on the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            default="read",
            help="Comma-separated: read, write, agent, admin (default: read).",
        )
        parser.add_argument(
            "--rate-limit",
            type=int,
            default=None,
            help="Requests per minute for this key (default: API_KEY_RATE_LIMIT_PER_MINUTE).",
        )

    def handle(self, *args, **options) -> None:
        scopes = [scope.strip() for scope in options["scopes"].split(",") if scope.strip()]
        try:
            created = api_key_create(
                name=options["name"],
                scopes=scopes,
                created_by="manage.py create_api_key",
                rate_limit_per_minute=options["rate_limit"],
            )
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        api_key = created.api_key
        self.stderr.write(
            f"Created API key '{api_key.name}' (prefix {api_key.prefix}, scopes "
            f"{','.join(api_key.scopes)}). Store it now: it is not shown again."
        )
        self.stdout.write(created.key)
