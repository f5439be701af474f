from django.db import migrations, models
from django.db.models import Case, F, Q, When
from django.db.models.functions import Coalesce


def channel_quantity_fill(apps, schema_editor):
    """What each listing's channel shows as far as we know: the newer of the last confirmed
    push and the last read-back (by `last_pushed_at` / `last_observed_at`), else whichever
    is known."""
    ChannelListing = apps.get_model("channels_sync", "ChannelListing")
    observed_newer = Q(last_observed_quantity__isnull=False, last_observed_at__isnull=False) & (
        Q(last_pushed_quantity__isnull=True)
        | Q(last_pushed_at__isnull=True)
        | Q(last_observed_at__gt=F("last_pushed_at"))
    )
    ChannelListing.objects.filter(channel_quantity__isnull=True).update(
        channel_quantity=Case(
            When(observed_newer, then=F("last_observed_quantity")),
            default=Coalesce("last_pushed_quantity", "last_observed_quantity"),
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("channels_sync", "0006_listing_push_stale_streak"),
    ]

    operations = [
        migrations.AddField(
            model_name="channellisting",
            name="channel_quantity",
            field=models.IntegerField(
                blank=True,
                null=True,
                help_text="What the channel shows as far as we know: set by a confirmed push "
                "and by every observation (read-back, stock webhook, stale refusal), never "
                "cleared before a send; the push sends it as the expected quantity to a "
                "channel with compare-and-set.",
            ),
        ),
        migrations.RunPython(channel_quantity_fill, migrations.RunPython.noop),
    ]
