"""ERP reconciliation tasks: fan out per vendor with an online agent, reconcile one vendor."""

import structlog
from celery import shared_task

from erp_mapping.models import ReconciliationEvent

logger = structlog.get_logger(__name__)


@shared_task(name="erp_mapping.reconcile_all", soft_time_limit=60, time_limit=120)
def reconcile_all() -> int:
    """Enqueue one reconciliation per vendor whose agent is online (beat: every
    ERP_RECONCILE_INTERVAL_SECONDS, hourly by default)."""
    from erp_mapping.selectors import vendors_to_reconcile

    vendors = vendors_to_reconcile()
    for vendor in vendors:
        reconcile_vendor.delay(str(vendor.pk))
    logger.info("erp_reconcile.fanned_out", vendors=len(vendors))
    return len(vendors)


@shared_task(name="erp_mapping.reconcile_vendor")
def reconcile_vendor(
    vendor_id: str, trigger: str = ReconciliationEvent.Trigger.SCHEDULE
) -> int | None:
    """Reconcile one vendor's stock with its ERP; return the event id.

    Not retried: the service records a failure on its event (the next hour's run is the
    retry, and two failures in a row alert), and a second attempt would be a second event.
    Only an unexpected error reaches the dead-letter queue. Safe to run twice: the second
    run is `skipped` while the first holds the vendor's lock, and finds no drift after it.
    Time limits: ERP_RECONCILE_TIME_LIMIT_SECONDS (the soft one a minute earlier).
    """
    from erp_mapping.services.reconcile import AgentNotRegistered, erp_reconcile
    from inventory.models import Vendor

    vendor = Vendor.objects.filter(pk=vendor_id).first()
    if vendor is None:
        return None
    try:
        return erp_reconcile(vendor=vendor, trigger=trigger).pk
    except AgentNotRegistered:
        logger.info("erp_reconcile.no_agent", vendor_id=vendor_id)
        return None
