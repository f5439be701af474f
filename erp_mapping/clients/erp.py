"""The ERP REST API client used by the nightly pull.

Contract: `GET {base}/inventory` with `Authorization: Bearer <token>` answers a JSON array of
`{"sku", "qty"}` objects (optional `"discontinued"` and `"warehouse"`). The client only
transports: it streams the body to a file and classifies failures; parsing and applying are
the pull service's job.

A body cut short is a failed attempt, never a result: the ERP frames its answer (a
Content-Length or chunked encoding), and urllib3 raises when the connection ends before the
framing says the body does (`IncompleteRead` / "Response ended prematurely", surfaced by
requests as `ChunkedEncodingError`).
"""

import time
from dataclasses import dataclass
from typing import BinaryIO

import requests

from core.http import OutboundError, http_session

CHUNK_BYTES = 1 << 20


class ErpClientError(Exception):
    """The ERP did not deliver the inventory; `retryable` says whether trying again may help.

    `code` names the failure: `erp_unreachable` (connection refused, DNS, timeout),
    `erp_download_incomplete` (the body broke off), `erp_unauthorized` (401/403: the token),
    `erp_error_status` (any other non-200 answer).
    """

    def __init__(
        self, message: str, *, code: str, retryable: bool, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class Download:
    """A delivered inventory body: its size and timings."""

    bytes: int
    latency_ms: int  # request sent -> response headers received
    transfer_ms: int  # response headers -> last byte


class ErpClient:
    def __init__(self, *, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def inventory_download(self, dest: BinaryIO) -> Download:
        """Stream `GET /inventory` into `dest`; raise `ErpClientError` when it fails.

        Connection errors, timeouts, a body cut short and 5xx answers are retryable; 401 and
        403 (a wrong token) and other 4xx are not.
        """
        started = time.perf_counter()
        try:
            response = http_session().get(
                f"{self.base_url}/inventory",
                headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
                stream=True,
                timeout=self.timeout,
            )
        except OutboundError as exc:
            raise ErpClientError(str(exc), code="erp_unreachable", retryable=True) from None
        latency_ms = round((time.perf_counter() - started) * 1000)
        with response:
            if response.status_code != 200:
                excerpt = response.text[:300] if response.status_code != 401 else ""
                status = response.status_code
                raise ErpClientError(
                    f"the ERP answered {status}{': ' + excerpt if excerpt else ''}",
                    code="erp_unauthorized" if status in (401, 403) else "erp_error_status",
                    retryable=status >= 500 or status == 429,
                    status=status,
                )
            size = 0
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    dest.write(chunk)
                    size += len(chunk)
            except requests.RequestException as exc:
                # Includes a body shorter than its framing announced: the bytes written so
                # far are discarded by the caller, which retries.
                raise ErpClientError(
                    f"the inventory download broke off after {size} bytes: {type(exc).__name__}",
                    code="erp_download_incomplete",
                    retryable=True,
                ) from None
        transfer_ms = round((time.perf_counter() - started) * 1000) - latency_ms
        return Download(bytes=size, latency_ms=latency_ms, transfer_ms=transfer_ms)
