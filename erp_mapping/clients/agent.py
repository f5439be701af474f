"""Calls from SyncStore to a vendor's on-premise ERP agent (at the agent's `agent_url`).

Every call is signed so the agent can tell it comes from SyncStore: the header
`X-SyncStore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed
with the agent's outbound secret (issued when the agent is registered). A call without a
body (a GET) signs `"<t>."`. The agent should refuse a signature older than five minutes.
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from core.http import OutboundError, http_session

SIGNATURE_HEADER = "X-SyncStore-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def signature_make(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    digest = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def signature_check(
    secret: str,
    header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether `header` is a valid signature of `body` made within `tolerance` seconds."""
    if not secret or not header:
        return False
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts.get("t", [""])[0])
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = signature_make(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected.encode(), v.encode()) for v in parts.get("v1", []))


class AgentCallError(Exception):
    """A call to the agent failed: no answer (`status` None), or a non-2xx answer."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class AgentAnswer:
    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


class AgentClient:
    """Signed JSON calls to one agent."""

    def __init__(self, *, agent_url: str, secret: str, timeout: float) -> None:
        self.base_url = agent_url.rstrip("/")
        self.secret = secret
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AgentAnswer:
        """Send one signed call; return the 2xx answer, raise `AgentCallError` otherwise."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        sent = {
            SIGNATURE_HEADER: signature_make(self.secret, raw, int(time.time())),
            "Accept": "application/json",
            **(headers or {}),
        }
        if body is not None:
            sent["Content-Type"] = "application/json"
        try:
            response = http_session().request(
                method,
                f"{self.base_url}/{path.lstrip('/')}",
                data=raw or None,
                params=params,
                headers=sent,
                timeout=self.timeout,
            )
        except OutboundError as exc:
            raise AgentCallError(f"the agent did not answer: {exc}") from None
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = {"raw": response.text[:300]}
        if not 200 <= response.status_code < 300:
            raise AgentCallError(
                f"the agent answered {response.status_code}",
                status=response.status_code,
                body=data,
            )
        return AgentAnswer(response.status_code, data, dict(response.headers))
