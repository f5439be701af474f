"""Orders to the ERP under concurrency: two workers, one send; two creations, one job."""

import threading
from collections.abc import Callable

import pytest
from django.db import connection
from django.utils import timezone

from core.sandbox import SandboxServer
from erp_mapping.agent_server import AgentServer
from erp_mapping.models import ErpSyncJob
from erp_mapping.services.agents import agent_register
from erp_mapping.services.erp_sync import erp_sync_job_create, erp_sync_send
from orders.models import Order
from tests.erp_mapping.sync_support import orders_calls

S = ErpSyncJob.Status


def in_threads(count: int, work: Callable[[], object]) -> list:
    """Run `work` in `count` threads released together; return their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def paid_order(vendor, number: str) -> Order:
    return Order.objects.create(
        vendor=vendor, order_number=number, status="paid", confirmed_at=timezone.now()
    )


@pytest.mark.django_db(transaction=True)
def test_erp_sync_two_workers_claiming_one_job_send_it_once(vendor, sync_settings):
    # given: a due job (made before the agent existed, so nothing sent it yet)
    job = erp_sync_job_create(order_id=paid_order(vendor, "C-1").pk, operation="order.create")
    app = AgentServer(orders={"latency": 0.3})
    with SandboxServer(app) as server:
        registered = agent_register(vendor=vendor, agent_url=server.url, erp_type="convex")
        app.credentials_add(secret=registered.outbound_secret, callback_token=registered.token)

        # when: two workers send it at the same moment
        outcomes = in_threads(4, lambda: erp_sync_send(job_id=job.pk).outcome)

    # then: one sent it, the others found it taken; the ERP has one document from one call
    assert sorted(outcomes) == ["completed", "skipped", "skipped", "skipped"]
    assert len(orders_calls(app)) == 1
    assert app.documents_created() == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (S.COMPLETED, 1)


@pytest.mark.django_db(transaction=True)
def test_erp_sync_concurrent_creations_of_one_job_make_one_row(vendor, sync_settings):
    order = paid_order(vendor, "C-2")

    jobs = in_threads(4, lambda: erp_sync_job_create(order_id=order.pk, operation="order.create"))

    assert not [job for job in jobs if isinstance(job, Exception)]
    assert len({job.pk for job in jobs}) == 1
    assert ErpSyncJob.objects.filter(order=order).count() == 1
    assert ErpSyncJob.objects.get(order=order).events.filter(kind="created").count() == 1
