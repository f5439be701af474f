from django.core.management.base import BaseCommand, CommandError

from channels_sync.models import Channel
from channels_sync.services.push import PushReport, channel_push

# Stop reasons that mean the channel could not be pushed (as opposed to "nothing to do",
# "another run holds it" or "the marketplace asked us to wait").
# Runs that left listings unsent: a caller (cron, CI) must not take them for success.
FAILED_STOPS = frozenset({"needs_reauth", "failing", "token_refresh_failed", "throttled", "busy"})


class Command(BaseCommand):
    help = (
        "Push a channel's dirty listings now, in the foreground, and print the counts. "
        "Exit 0 when every listing sent was applied, 1 when some failed, the channel needs "
        "re-authorisation or the marketplace kept failing, or the channel is unknown."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--channel", type=int, required=True, help="The channel's id.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Compute and record the desired quantities; send nothing.",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="Send every listing, changed or not, including those backing off (a resync).",
        )

    def handle(self, *args, **options) -> None:
        channel = Channel.objects.filter(pk=options["channel"]).first()
        if channel is None:
            raise CommandError(f"No channel with id {options['channel']}.", returncode=1)
        report = channel_push(
            channel_id=channel.pk,
            dry_run=True if options["dry_run"] else None,
            include_clean=options["all"],
            respect_backoff=not options["all"],
        )
        self.stdout.write(report_text(channel, report))
        if report.failed or report.stopped in FAILED_STOPS:
            reason = f"stopped: {report.stopped}" if report.stopped else f"{report.failed} failed"
            raise CommandError(f"push of channel {channel.pk} failed ({reason})", returncode=1)


def report_text(channel: Channel, report: PushReport) -> str:
    """The run's counts, one per line."""
    lines = [
        f"channel {channel.pk} ({channel}){' (dry run)' if report.dry_run else ''}",
        f"  planned        {report.planned}",
        f"  pushed         {report.pushed}",
        f"  unchanged      {report.unchanged}",
        f"  failed         {report.failed}",
        f"  throttled      {report.throttled}",
        f"  retried        {report.retried}",
        f"  dead-lettered  {report.dead_lettered}",
        f"  calls          {report.calls}",
        f"  waited         {report.waited_seconds:.1f} s",
    ]
    if report.stopped:
        lines.append(f"  stopped        {report.stopped}")
    if report.requeue_after is not None:
        lines.append(f"  retry after    {report.requeue_after:.0f} s")
    lines.extend(f"  error          {error}" for error in report.errors[:5])
    return "\n".join(lines)
