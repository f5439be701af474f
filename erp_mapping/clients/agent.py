"""Calls from SyncStore to a vendor's on-premise ERP agent (at the agent's `agent_url`).

Every call is signed so the agent can tell it comes from SyncStore: the header
`X-SyncStore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed
with the agent's outbound secret (issued when the agent is registered). A call without a
body (a GET) signs its request target instead, `"<t>.<METHOD> <path>?<query>"` exactly as
sent (the path as in the URL, the query string as encoded; no `?` without a query), so a
signature cannot be replayed on another path or with other parameters. The agent should
refuse a signature older than five minutes.

Every call to a vendor's agent goes through that vendor's circuit breaker
(`erp_mapping.clients.breaker`): build the client with `agent_client_for(agent)`. While the
circuit is open no call is made and `AgentUnavailable` (an `AgentCallError` saying when to
try again) is raised instead.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import requests
from django.conf import settings

from core.http import OutboundError, http_session
from core.secrets import unmark_secret

if TYPE_CHECKING:
    from erp_mapping.models import ErpAgent

SIGNATURE_HEADER = "X-SyncStore-Signature"


def signature_make(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds); for a
    call without a body, `body` is its request target (`request_target`)."""
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def request_target(method: str, path_url: str) -> bytes:
    """What a call without a body signs: `"<METHOD> <path>?<query>"` as sent."""
    return f"{method.upper()} {path_url}".encode()


class AgentCallError(Exception):
    """A call to the agent failed: no answer (`status` None), or a non-2xx answer."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class AgentUnavailable(AgentCallError):
    """The vendor's circuit is open: no call was made; try again at `retry_at`."""

    def __init__(self, message: str, *, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


def agent_failure(exc: BaseException) -> bool:
    """Whether an error says the agent is unwell (what the circuit breaker counts).

    No answer (refused, timed out), a 5xx, a 408 or a 429; and a 401, 403 or 404, which
    say the agent is set up wrong (a secret it lacks, a wrong URL): every call would get
    the same, so the circuit should open. Any other 4xx (400, 409, 422) is the agent
    answering, and refusing this one call: the agent is up.
    """
    if not isinstance(exc, AgentCallError) or isinstance(exc, AgentUnavailable):
        return False
    return exc.status is None or exc.status >= 500 or exc.status in (401, 403, 404, 408, 429)


class Breaker(Protocol):
    def call(self, send: Callable[[], requests.Response]) -> requests.Response: ...


@dataclass(frozen=True)
class AgentAnswer:
    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


class AgentClient:
    """Signed JSON calls to one agent."""

    def __init__(
        self, *, agent_url: str, secret: str, timeout: float, breaker: Breaker | None = None
    ) -> None:
        self.base_url = agent_url.rstrip("/")
        self.secret = secret
        self.timeout = timeout
        self.breaker = breaker

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AgentAnswer:
        """Send one signed call; return the 2xx answer, raise `AgentCallError` otherwise.

        With a breaker, only the exchange itself runs inside it (an error of ours before the
        call is never counted against the agent), and `AgentUnavailable` is raised without
        a call while the circuit is open.
        """
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        # The URL is encoded here, once, and sent as it is: a call without a body signs its
        # request target, which must be the one the agent receives.
        url = requests.Request(
            method, f"{self.base_url}/{path.lstrip('/')}", params=params
        ).prepare()
        signed = raw or request_target(method, url.path_url)
        sent = {
            SIGNATURE_HEADER: signature_make(self.secret, signed, int(time.time())),
            "Accept": "application/json",
            **(headers or {}),
        }
        if body is not None:
            sent["Content-Type"] = "application/json"

        def exchange() -> requests.Response:
            try:
                response = http_session().request(
                    method,
                    url.url,
                    data=raw or None,
                    headers=sent,
                    timeout=self.timeout,
                )
            except OutboundError as exc:
                raise AgentCallError(f"the agent did not answer: {exc}") from None
            if not 200 <= response.status_code < 300:
                raise AgentCallError(
                    f"the agent answered {response.status_code}",
                    status=response.status_code,
                    body=_answer_data(response),
                )
            return response

        response = self.breaker.call(exchange) if self.breaker is not None else exchange()
        return AgentAnswer(response.status_code, _answer_data(response), dict(response.headers))


def _answer_data(response: requests.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return {"raw": response.text[:300]}


def agent_client_for(agent: "ErpAgent") -> AgentClient:
    """The client of a vendor's agent: its URL, its outbound secret, its vendor's breaker.

    Every call SyncStore makes to an agent should use this (the order sync and the
    reconciliation do), so that the vendor's circuit counts every failure and spares the
    agent while it is open. `ERP_AGENT_HTTP_TIMEOUT_SECONDS` bounds each call.
    """
    from erp_mapping.clients.breaker import vendor_breaker

    return AgentClient(
        agent_url=agent.agent_url,
        secret=unmark_secret(agent.outbound_secret or ""),
        timeout=settings.ERP_AGENT_HTTP_TIMEOUT_SECONDS,
        breaker=vendor_breaker(agent.vendor_id),
    )
