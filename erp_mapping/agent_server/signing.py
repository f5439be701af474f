"""The agent's own check of `X-SyncStore-Signature` (as an agent implementer writes it from
the protocol: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, and for a call
without a body `"<t>.<METHOD> <path>?<query>"`, the request target as received),
deliberately not SyncStore's code, so the sandbox checks what SyncStore sends."""

import hashlib
import hmac
import time

SIGNATURE_TOLERANCE_SECONDS = 300


def signature_valid(
    secret: str,
    header: str,
    body: bytes,
    *,
    method: str = "",
    path: str = "",
    query_string: str = "",
    now: float | None = None,
) -> bool:
    """The agent's own check of SyncStore's signature (not SyncStore's code).

    A call without a body is checked against its request target: `method`, `path` and the
    raw `query_string` as received (without one, such a call never passes).
    """
    if not body:
        if not method or not path:
            return False
        body = f"{method.upper()} {path}{'?' + query_string if query_string else ''}".encode()
    timestamp, signatures = "", []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value)
    if not timestamp.isdigit() or not signatures:
        return False
    if abs((now or time.time()) - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return any(hmac.compare_digest(expected.hexdigest(), s) for s in signatures)
