"""Inventory Celery tasks (thin shells over services)."""

from celery import shared_task


@shared_task(name="inventory.expire_reservations")
def expire_reservations() -> int:
    """Expire reservations past their time (beat: every minute)."""
    from inventory.services import reservations_expire

    return reservations_expire()
