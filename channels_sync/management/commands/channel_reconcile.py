from django.core.management.base import BaseCommand, CommandError

from channels_sync.models import Channel
from channels_sync.services.reconcile import ReconcileReport, channel_reconcile

# Runs that did not read every listing: a caller (cron, CI) must not take them for success.
FAILED_STOPS = frozenset({"needs_reauth", "failing", "token_refresh_failed", "busy", "lock_lost"})


class Command(BaseCommand):
    help = (
        "Read a channel's (or every active channel's) listing stock back from the marketplace "
        "now, in the foreground, compare it with what was pushed, and print the report. Exit "
        "0 when every channel was read, 1 when one could not be (re-authorisation needed, the "
        "marketplace kept failing, another run holds it) or the channel is unknown."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--channel", type=int, help="The channel's id (default: every active channel)."
        )

    def handle(self, *args, **options) -> None:
        if options["channel"] is not None:
            if not Channel.objects.filter(pk=options["channel"]).exists():
                raise CommandError(f"No channel with id {options['channel']}.", returncode=1)
            channel_ids = [options["channel"]]
        else:
            channel_ids = list(
                Channel.objects.filter(active=True).order_by("pk").values_list("pk", flat=True)
            )
        failed = False
        for channel_id in channel_ids:
            report = channel_reconcile(channel_id=channel_id, trigger="command")
            self.stdout.write(self._line(report))
            failed = failed or report.stopped in FAILED_STOPS
        if failed:
            raise CommandError("Some channels could not be read back.", returncode=1)

    @staticmethod
    def _line(report: ReconcileReport) -> str:
        name = Channel.objects.filter(pk=report.channel_id).values_list("name", flat=True).first()
        line = (
            f"channel {report.channel_id} ({name}): {report.read} read, {report.matching} "
            f"matching, {report.mismatched} mismatched, {report.conflicts_opened} conflicts "
            f"opened, {report.conflicts_updated} updated, {report.conflicts_closed} closed, "
            f"{report.not_found} not found on the marketplace, {report.skipped} not compared, "
            f"{report.unconfirmed} unconfirmed, {len(report.errors)} errors"
        )
        if report.stopped:
            line += f" (stopped: {report.stopped})"
        for error in report.errors[:5]:
            line += f"\n  error: {error}"
        return line
