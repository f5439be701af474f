"""Nightly pull tasks: fan out per vendor, pull one vendor, purge old archives."""

import structlog
from celery import shared_task

from erp_mapping.models import SyncRun

logger = structlog.get_logger(__name__)


# The quick ERP tasks get fixed limits so a stuck connection cannot hold a worker forever;
# the per-vendor pull's limits follow its run lock (CELERY_TASK_ANNOTATIONS in the settings).
@shared_task(name="erp_mapping.pull_all", soft_time_limit=60, time_limit=120)
def pull_all() -> int:
    """Enqueue one pull per vendor with an ERP connection (beat: 02:00 UTC)."""
    from erp_mapping import selectors

    vendors = selectors.vendors_to_pull()
    for vendor in vendors:
        pull_vendor.delay(str(vendor.pk))
    logger.info("erp_pull.fanned_out", vendors=len(vendors))
    return len(vendors)


@shared_task(name="erp_mapping.pull_vendor")
def pull_vendor(
    vendor_id: str, trigger: str = SyncRun.Trigger.SCHEDULE, dry_run: bool = False
) -> int | None:
    """Pull one vendor's stock counts from its ERP; return the run id.

    The service retries the download itself and records failures on the run (with an
    alert), so this task does not retry: a second attempt would be a second run. Only an
    unexpected error reaches the dead-letter queue. Time limits (`ERP_PULL_*` settings): at
    the soft one the pull records its run as failed and releases the vendor's run lock; the
    hard one equals the lock's timeout, so a pull killed there leaves a lock the next start
    takes over.
    """
    from erp_mapping.services.pull import ErpNotConfigured, erp_pull_run
    from inventory.models import Vendor

    vendor = Vendor.objects.filter(pk=vendor_id).first()
    if vendor is None:
        return None
    try:
        return erp_pull_run(vendor=vendor, trigger=trigger, dry_run=dry_run).pk
    except ErpNotConfigured:
        # The connection was removed or disabled after the pull was queued.
        logger.info("erp_pull.nothing_to_pull", vendor_id=vendor_id)
        return None


@shared_task(name="erp_mapping.purge_archives", soft_time_limit=540, time_limit=600)
def purge_archives() -> int:
    """Delete raw pull payloads older than ERP_ARCHIVE_RETENTION_DAYS (beat: daily)."""
    from erp_mapping.services.pull import archives_purge

    return archives_purge()
