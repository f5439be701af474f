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
from core.logging import REDACTED, redact_value

logger = structlog.get_logger(__name__)

USER_AGENT = "SyncStore/1.0"


class OutboundError(Exception):
    """An outside system could not be reached or did not answer in time."""

    def __init__(self, message: str, *, url: str = "", timeout: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.timeout = timeout


class CorrelatedSession(requests.Session):
    """A requests session that sends the bound correlation id and logs every call.

    Pass `secret_path=True` for a URL whose path is itself a credential (a Slack incoming
    webhook): logs and errors then show only its scheme and host.
    """

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        secret_path = kwargs.pop("secret_path", False)
        headers = dict(kwargs.pop("headers", None) or {})
        cid = get_correlation_id()
        if cid:
            headers.setdefault(HEADER, cid)
        kwargs.setdefault("timeout", settings.OUTBOUND_HTTP_TIMEOUT_SECONDS)
        log_url = loggable_url(url, secret_path=secret_path)
        started = time.perf_counter()
        try:
            response = super().request(method, url, *args, headers=headers, **kwargs)
        except requests.RequestException as exc:
            timeout = isinstance(exc, requests.Timeout)
            error = _scrub(f"{type(exc).__name__}: {exc}", url, log_url, secret_path=secret_path)
            logger.warning("http.failed", method=method, url=log_url, error=error, timeout=timeout)
            # Raised without the original exception attached: its text holds the raw URL.
            raise OutboundError(
                f"{'timeout calling' if timeout else 'cannot reach'} {log_url}: {error}",
                url=log_url,
                timeout=timeout,
            ) from None
        logger.info(
            "http.request",
            method=method,
            url=log_url,
            status=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response


def loggable_url(url: str, *, secret_path: bool = False) -> str:
    """The URL as logs may show it: no user info, no secret query values, and with
    `secret_path` no path at all."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if secret_path:
        return f"{parts.scheme}://{netloc}/{REDACTED}"
    return redact_value(parts._replace(netloc=netloc).geturl())


def _scrub(text: str, url: str, log_url: str, *, secret_path: bool) -> str:
    """Put the loggable URL in place of the raw one (and, when secret, drop its path)."""
    text = text.replace(url, log_url)
    path = urlsplit(url).path
    if secret_path and path not in ("", "/"):
        text = text.replace(path, f"/{REDACTED}")
    return redact_value(text)


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
