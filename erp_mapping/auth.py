"""ERP agent tokens: format, DRF bearer authentication, the agent principal, per-agent throttle.

A token reads `ssa_<43 url-safe characters>` (256 random bits). Only its SHA-256 is stored,
unique, so a request's token is found by the hash of what it sends: there is nothing to
compare in constant time, and nothing secret is ever logged. Agents send it as
`Authorization: Bearer <token>`.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.auth import ApiPrincipal
from core.counters import counter_incr
from erp_mapping.models import ErpAgent

AGENT_TOKEN_PREFIX = "ssa_"  # noqa: S105 - the public prefix, not a secret
AGENT_SCOPE = "agent"


def agent_token_generate() -> tuple[str, str, str]:
    """Return a new (token, display prefix, hash)."""
    token = f"{AGENT_TOKEN_PREFIX}{secrets.token_urlsafe(32)}"
    return token, token[:12], agent_token_hash(token)


def agent_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def agent_token_verify(token: str) -> ErpAgent:
    """Return the agent holding `token`, or raise `AuthenticationFailed` (`invalid_agent_token`)."""
    if not token.startswith(AGENT_TOKEN_PREFIX):
        raise exceptions.AuthenticationFailed("Malformed agent token.", code="invalid_agent_token")
    agent = ErpAgent.objects.filter(token_hash=agent_token_hash(token)).first()
    if agent is None:
        raise exceptions.AuthenticationFailed("Invalid agent token.", code="invalid_agent_token")
    return agent


@dataclass(frozen=True, kw_only=True)
class AgentPrincipal(ApiPrincipal):
    """An ERP agent as DRF's `request.user`: scope `agent` only, acting for its vendor.

    A subclass of `ApiPrincipal`, so `core.auth.HasScope` and everything that reads
    `actor` / `owner` treat it like any other caller; it holds no API key.
    """

    api_key: None = None
    agent: ErpAgent

    @property
    def scopes(self) -> set[str]:
        return {AGENT_SCOPE}

    @property
    def actor(self) -> str:
        return f"agent:{self.agent.vendor_id}"

    @property
    def owner(self) -> str:
        return f"erp_agent:{self.agent.pk}"


class AgentTokenAuthentication(BaseAuthentication):
    """Authenticate `Authorization: Bearer <agent token>`; `request.auth` is the `ErpAgent`.

    No bearer header: not authenticated here (the permission answers 401
    `not_authenticated`). A bearer header with a bad or unknown token: 401
    `invalid_agent_token`.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AgentPrincipal, ErpAgent] | None:
        scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        agent = agent_token_verify(value.strip())
        structlog.contextvars.bind_contextvars(client=f"agent:{agent.vendor_id}")
        return AgentPrincipal(agent=agent), agent

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class AgentThrottle(BaseThrottle):
    """Count each agent's requests in one-minute windows, like `core.auth.ApiKeyThrottle`.

    The limit is `API_KEY_RATE_LIMIT_PER_MINUTE`; over it answers 429 with `Retry-After`.
    Subclasses count another scope of an agent's requests in their own windows.
    """

    scope = "erp_agent"

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def limit(self) -> int:
        return settings.API_KEY_RATE_LIMIT_PER_MINUTE

    def allow_request(self, request: Request, view: object) -> bool:
        agent = request.auth if isinstance(request.auth, ErpAgent) else None
        if agent is None:
            return True
        now = time.time()
        count = counter_incr(
            f"throttle:{self.scope}:{agent.pk}:{int(now // 60)}", ttl=120, feature="agent_throttle"
        )
        # No count (the cache is down): let the request through rather than refuse service.
        if count is not None and count > self.limit():
            self.retry_after = 60 - (now % 60)
            return False
        return True

    def wait(self) -> float | None:
        return self.retry_after


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "erp_mapping.auth.AgentTokenAuthentication"
    name = "ErpAgentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An ERP agent token (`ssa_...`), shown once when the agent is "
            "registered: `Authorization: Bearer <token>`.",
        }


class AgentCallbackThrottle(AgentThrottle):
    """The agent's callbacks, in windows of their own at `ERP_AGENT_CALLBACK_RATE_PER_MINUTE`:
    an agent calls back once per accepted order, so a sales peak neither answers them 429
    nor uses up the window its heartbeats and ingest batches count in."""

    scope = "erp_agent_callback"

    def limit(self) -> int:
        return settings.ERP_AGENT_CALLBACK_RATE_PER_MINUTE
