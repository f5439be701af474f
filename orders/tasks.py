"""Order tasks (queue `orders`)."""

from celery import shared_task

from core.task_base import BaseTask, backoff_seconds


@shared_task(bind=True, base=BaseTask, name="orders.reprocess_parked", max_retries=5)
def reprocess_parked(self, channel_id: int) -> int:
    """Reprocess a channel's parked orders (new listings may map their lines).

    Safe to run twice (a mapped order has nothing left to do). Retries with backoff, then
    dead-letters; the orders stay parked meanwhile, and staff can reprocess them.
    """
    from orders.models import OrderEvent
    from orders.services import Actor, orders_reprocess_parked

    try:
        return orders_reprocess_parked(
            channel_id=channel_id,
            actor=Actor(source=OrderEvent.Source.SYSTEM, actor="system:orders:listing_created"),
        )
    except Exception as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc


@shared_task(bind=True, base=BaseTask, name="orders.reprocess_parked_all", max_retries=3)
def reprocess_parked_all(self) -> int:
    """Reprocess parked orders of every channel, oldest first, a bounded batch (beat).

    Catches the orders the listing hook missed. Safe to run twice; one failing order is
    logged and skipped by the service, so a retry here means the batch itself failed.
    """
    from orders.models import OrderEvent
    from orders.services import Actor, orders_reprocess_parked_all

    try:
        return orders_reprocess_parked_all(
            actor=Actor(source=OrderEvent.Source.SYSTEM, actor="system:orders:parked_sweep")
        )
    except Exception as exc:
        raise self.retry(exc=exc, countdown=backoff_seconds(self.request.retries)) from exc
