import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("core", "0001_initial")]
AFTER = [("core", "0002_deadletter_unresolved_job")]


@pytest.mark.django_db(transaction=True)
def test_unresolved_job_constraint_migration_folds_existing_duplicates():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        DeadLetter = executor.loader.project_state(BEFORE).apps.get_model("core", "DeadLetter")
        now = timezone.now()
        common = {"source": "t", "task_name": "x.y", "error_class": "E", "last_failed_at": now}
        older = DeadLetter.objects.create(fingerprint="same", attempts=2, **common)
        newer = DeadLetter.objects.create(
            fingerprint="same", attempts=3, **{**common, "last_failed_at": now}
        )
        other = DeadLetter.objects.create(fingerprint="other", attempts=1, **common)

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)

        DeadLetter = executor.loader.project_state(AFTER).apps.get_model("core", "DeadLetter")
        rows = {row.pk: row for row in DeadLetter.objects.all()}
        assert (rows[newer.pk].status, rows[newer.pk].attempts) == ("open", 5)
        assert rows[older.pk].status == "resolved"
        assert f"#{newer.pk}" in rows[older.pk].note
        assert (rows[other.pk].status, rows[other.pk].attempts) == ("open", 1)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
