"""The one outbound HTTP session: correlation id header, default timeout, structured logs.

Adapters and clients for outside systems (ERP, marketplaces, Slack, S3) call through
`http_session()`. Transport failures (connection refused, DNS, timeouts) surface as
`OutboundError`, the single exception type callers handle for "the other side did not
answer"; HTTP error statuses are returned for the caller to classify.
"""

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
from django.conf import settings
from requests.adapters import HTTPAdapter

from core.correlation import HEADER, get_correlation_id
from core.logging import redact_value

logger = structlog.get_logger(__name__)

USER_AGENT = "SyncStore/1.0"


class OutboundError(Exception):
    """An outside system could not be reached or did not answer in time."""

    def __init__(self, message: str, *, url: str = "", timeout: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.timeout = timeout


class CorrelatedSession(requests.Session):
    """A requests session that sends the bound correlation id and logs every call."""

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        cid = get_correlation_id()
        if cid:
            headers.setdefault(HEADER, cid)
        kwargs.setdefault("timeout", settings.OUTBOUND_HTTP_TIMEOUT_SECONDS)
        log_url = redact_value(_without_userinfo(url))
        started = time.perf_counter()
        try:
            response = super().request(method, url, *args, headers=headers, **kwargs)
        except requests.Timeout as exc:
            logger.warning("http.timeout", method=method, url=log_url, error=str(exc))
            raise OutboundError(f"timeout calling {log_url}", url=log_url, timeout=True) from exc
        except requests.RequestException as exc:
            logger.warning("http.failed", method=method, url=log_url, error=str(exc))
            raise OutboundError(f"cannot reach {log_url}: {exc}", url=log_url) from exc
        logger.info(
            "http.request",
            method=method,
            url=log_url,
            status=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        parts = parts._replace(netloc=netloc)
    return parts.geturl()


_session: CorrelatedSession | None = None
_session_lock = threading.Lock()


def http_session() -> CorrelatedSession:
    """Return the process-wide outbound session (connection pooling, no hidden retries)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = CorrelatedSession()
                adapter = HTTPAdapter(pool_connections=20, pool_maxsize=20, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = USER_AGENT
                _session = session
    return _session
