from django.db import migrations, models
from django.db.models import Count, Sum
from django.utils import timezone


def fold_duplicate_unresolved(apps, schema_editor):
    """Keep one unresolved row per job: the latest takes the others' attempts."""
    DeadLetter = apps.get_model("core", "DeadLetter")
    unresolved = DeadLetter.objects.filter(status__in=["open", "retried"])
    duplicated = (
        unresolved.values("fingerprint").annotate(rows=Count("id")).filter(rows__gt=1)
    )
    for group in duplicated:
        rows = unresolved.filter(fingerprint=group["fingerprint"]).order_by("-last_failed_at", "-id")
        keep = rows.first()
        others = rows.exclude(pk=keep.pk)
        keep.attempts += others.aggregate(total=Sum("attempts"))["total"] or 0
        keep.save(update_fields=["attempts"])
        others.update(
            status="resolved",
            resolved_by="system:migration",
            resolved_at=timezone.now(),
            note=f"Merged into dead letter #{keep.pk} (the same job).",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(fold_duplicate_unresolved, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["open", "retried"])),
                fields=("fingerprint",),
                name="uniq_deadletter_unresolved_job",
            ),
        ),
    ]
