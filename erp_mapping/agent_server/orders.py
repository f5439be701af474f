"""The agent's orders endpoint: `POST /orders` (see `erp_mapping.agent_server`)."""

from typing import Any

from core.sandbox import SandboxRequest, SandboxResponse


class AgentOrdersMixin:
    """Takes orders into a fake ERP: checks the signature, answers 200 or 202 (and calls
    back later), with faults."""

    def __init__(self, **options: Any) -> None:
        self.erp_orders: dict[str, dict] = {}

    def handle_orders(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def orders_reset(self) -> None:
        self.erp_orders.clear()
