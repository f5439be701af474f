import time

from django.core.management.base import BaseCommand, CommandError

from core.sandbox import SandboxServer, sandboxes


class Command(BaseCommand):
    help = (
        "Run the built-in sandboxes of outside systems on localhost: `sandbox serve`; "
        "`sandbox list` names them (every installed app's `sandbox` module is imported)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["serve", "list"])
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--port", type=int, default=8900, help="First port; each sandbox takes the next one."
        )
        parser.add_argument("--only", default="", help="Comma-separated sandbox names.")

    def handle(self, *args, **options) -> None:
        available = sandboxes()
        if options["action"] == "list":
            for name in sorted(available):
                self.stdout.write(name)
            return
        names = [n.strip() for n in options["only"].split(",") if n.strip()] or sorted(available)
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise CommandError(f"unknown sandboxes: {', '.join(unknown)}")
        servers = []
        for offset, name in enumerate(names):
            app = available[name]()
            server = SandboxServer(app, host=options["host"], port=options["port"] + offset)
            servers.append(server.start())
            self.stdout.write(f"{name:<12} {server.url}{app.describe()}")
        self.stdout.write(
            "control API: GET /_sandbox/requests, POST /_sandbox/faults, POST /_sandbox/reset, "
            "POST /_sandbox/configure"
        )
        self.stdout.write("Ctrl-C stops.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            for server in servers:
                server.stop()
