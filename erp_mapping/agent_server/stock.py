"""The agent's stock endpoints: checksums over SKU ranges, and rows of a range (see
`erp_mapping.agent_server`)."""

from typing import Any

from core.sandbox import SandboxRequest, SandboxResponse


class AgentStockMixin:
    """Serves the ERP's stock, as the reconciliation reads it."""

    def __init__(self, **options: Any) -> None:
        self.erp_stock: dict[tuple[str, str], Any] = {}

    def handle_checksums(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def handle_stock(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def stock_reset(self) -> None:
        self.erp_stock.clear()
