"""The agent's own check of `X-SyncStore-Signature` (as an agent implementer writes it from
the protocol: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, the body empty for
a GET), deliberately not SyncStore's code, so the sandbox checks what SyncStore sends."""

import hashlib
import hmac
import time

SIGNATURE_TOLERANCE_SECONDS = 300


def signature_valid(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """The agent's own check of SyncStore's signature (not SyncStore's code)."""
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
