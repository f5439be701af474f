"""The on-premise ERP agent, served: what SyncStore calls at `{agent_url}`.

`AgentServer` is a sandbox (a WSGI app, see `core.sandbox`) standing in for the agent next
to a vendor's ERP. It answers the calls SyncStore makes to an agent:

- `POST /orders`: an order to create (or cancel) in the ERP (`AgentOrdersMixin`);
- `GET /stock/checksums?ranges=...` and `GET /stock?from_sku=&to_sku=`: the ERP's stock, by
  range checksum and by rows (`AgentStockMixin`).

Paths may carry a prefix (an `agent_url` with a path): the routes match on the path's end.
"""

from typing import Any

from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse
from erp_mapping.agent_server.orders import AgentOrdersMixin
from erp_mapping.agent_server.stock import AgentStockMixin


class AgentServer(AgentOrdersMixin, AgentStockMixin, SandboxApp):
    """A fake ERP agent: orders into the ERP, the ERP's stock out (see the module)."""

    name = "erp-agent"

    def __init__(self, **options: Any) -> None:
        SandboxApp.__init__(self)
        AgentOrdersMixin.__init__(self, **options.pop("orders", {}))
        AgentStockMixin.__init__(self, **options.pop("stock", {}))
        if options:
            raise TypeError(f"unknown options: {', '.join(sorted(options))}")

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path.rstrip("/")
        if path.endswith("/orders"):
            return self.handle_orders(request)
        if path.endswith("/stock/checksums"):
            return self.handle_checksums(request)
        if path.endswith("/stock"):
            return self.handle_stock(request)
        return SandboxResponse.json(404, {"error": "not_found", "message": "unknown path"})

    def configure(self, **options: Any) -> dict:
        """Change options (also `POST /_sandbox/configure`, for an agent served on its own by
        `manage.py sandbox serve erp-agent`): the orders options (`mode`, `syncstore_url`,
        `callback_delay`, `down`, `latency`, `never_call_back`, `fail_callbacks`), and
        `credentials`, a list of `{"secret", "callback_token"}`: a vendor's outbound secret
        (from its registration) and its agent token, for the calls and callbacks of each
        vendor this agent serves. Returns the orders options and how many vendors it serves.
        """
        credentials = options.pop("credentials", None)
        well_formed = isinstance(credentials, list) and all(
            isinstance(item, dict)
            and isinstance(item.get("secret"), str)
            and item["secret"]
            and isinstance(item.get("callback_token", ""), str)
            for item in credentials
        )
        if credentials is not None and not well_formed:
            raise ValueError("credentials must be a list of {secret, callback_token}")
        answer = self.orders_configure(**options)
        for item in credentials or []:
            self.credentials_add(
                secret=item["secret"], callback_token=item.get("callback_token", "")
            )
        return {**answer, "vendors": len(self.credentials)}

    def reset(self) -> None:
        SandboxApp.reset(self)
        self.orders_reset()
        self.stock_reset()

    def describe(self) -> str:
        return "POST /orders, GET /stock/checksums?ranges=a..b, GET /stock?from_sku=&to_sku="
