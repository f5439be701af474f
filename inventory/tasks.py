"""Inventory Celery tasks (thin shells over services)."""

from celery import shared_task

from inventory import services


@shared_task(name="inventory.expire_reservations")
def expire_reservations() -> int:
    """Expire reservations past their time (beat: every minute)."""
    return services.reservations_expire()
