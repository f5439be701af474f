"""Signatures of a custom REST shop, made the way Stripe signs its webhooks.

`X-SyncStore-Signature` (inbound webhooks) and `X-Signature` (outbound calls with auth
`hmac`) both read `t=<unix seconds>,v1=<hex>`, where the hex is HMAC-SHA256, keyed with the
secret's UTF-8 bytes, of `"<t>." + raw body` (Stripe, "Verify webhook signatures manually":
https://docs.stripe.com/webhooks#verify-manually). Several `v1` entries may be sent while a
secret is rolled; any one matching is enough, compared in constant time.
"""

import hashlib
import hmac
import re

# Stripe's default tolerance (stripe-python `Webhook.DEFAULT_TOLERANCE`): 5 minutes; we
# refuse a timestamp that far in the future as well.
TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-f]{64}")


def signature_hex(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `"<timestamp>." + body`, keyed with `secret`."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    """The header value `t=<timestamp>,v1=<hex>` for a body."""
    return f"t={timestamp},v1={signature_hex(secret=secret, timestamp=timestamp, body=body)}"


def signature_parse(header: str) -> tuple[int, list[str]] | None:
    """The timestamp and the `v1` values of a signature header (other schemes, such as
    Stripe's `v0`, are ignored); None when there is no readable timestamp or no `v1`."""
    if not header or len(header) > 2000 or not header.isascii():
        return None
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return None
            timestamp = int(value)
        elif name == "v1" and _HEX.fullmatch(value.lower()):
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def signature_verified(
    *, secret: str, header: str, body: bytes, now: float
) -> tuple[int, str] | None:
    """The header's timestamp and the `v1` signature of it that matches the body, when the
    timestamp lies within `TOLERANCE_SECONDS` of `now` either way; else None (also for an
    empty secret). Both come from `signature_parse`, the one reading of the header: whatever
    else the header holds (other schemes, unknown parts) makes no difference to them."""
    parsed = signature_parse(header)
    if parsed is None or not secret:
        return None
    timestamp, signatures = parsed
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return None
    expected = signature_hex(secret=secret, timestamp=timestamp, body=body)
    found = None
    for candidate in signatures:
        # Every candidate is compared (no early exit), each in constant time.
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            found = candidate
    return None if found is None else (timestamp, found)


def signature_match(*, secret: str, header: str, body: bytes, now: float) -> str | None:
    """The `v1` signature of the header that matches the body (`signature_verified`)."""
    verified = signature_verified(secret=secret, header=header, body=body, now=now)
    return None if verified is None else verified[1]
