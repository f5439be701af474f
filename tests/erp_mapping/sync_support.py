"""Helpers of the order -> ERP sync tests (their fixtures are in conftest.py)."""

from erp_mapping.agent_server import AgentServer
from erp_mapping.models import ErpSyncJob
from orders.models import Order
from orders.services import Actor

API = Actor(source="api", actor="test")


def job_of(order: Order, operation: str = ErpSyncJob.Operation.ORDER_CREATE) -> ErpSyncJob:
    return ErpSyncJob.objects.get(order=order, operation=operation)


def orders_calls(app: AgentServer) -> list:
    return [r for r in app.requests if r.path.endswith("/orders")]
