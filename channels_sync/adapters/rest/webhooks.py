"""The signature of a custom REST shop's webhooks, and the nonce remembered against replays
(see the package docstring; signed as Stripe signs, `signing`)."""

import time
from typing import ClassVar

from channels_sync.adapters.base import Adapter
from channels_sync.adapters.rest.signing import signature_header, signature_verified

SIGNATURE_HEADER = "X-SyncStore-Signature"
# How long a webhook's signature is remembered against replays: twice the timestamp
# tolerance, so a signature is remembered as long as its timestamp is accepted.
NONCE_SECONDS = 600


class RestWebhooks(Adapter):
    """Signing and verifying `X-SyncStore-Signature` with the `webhook_secret` credential."""

    webhook_signature_header = SIGNATURE_HEADER
    webhook_key_fields = ("webhook_secret",)
    webhook_nonce_seconds: ClassVar[int] = NONCE_SECONDS

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """The signature header of a body signed now (what the shop sends)."""
        secret = str(self.credentials.get("webhook_secret") or "")
        return signature_header(secret=secret, timestamp=int(time.time()), body=body)

    def webhook_verify(self, *, headers: dict[str, str], body: bytes, url: str = "") -> bool:
        """Whether any `v1` of `X-SyncStore-Signature` matches the body, with a timestamp
        within 5 minutes of now either way (constant-time compare)."""
        return self.webhook_nonce(headers=headers, body=body) is not None

    def webhook_nonce(self, *, headers: dict[str, str], body: bytes) -> str | None:
        """What makes this signed request unique, remembered against replays: its timestamp
        and the `v1` signature that matched, both as the signature check read them (None: it
        does not verify). Nothing else in the header counts, so a request cannot be made
        "new" by adding parts the check ignores, or by writing the same timestamp another
        way. A redelivery of the same event is signed afresh (another timestamp), so it is
        not a replay."""
        header = next(
            (v for k, v in headers.items() if str(k).lower() == SIGNATURE_HEADER.lower()), ""
        )
        secret = str(self.credentials.get("webhook_secret") or "")
        verified = signature_verified(secret=secret, header=header, body=body, now=time.time())
        if verified is None:
            return None
        timestamp, signature = verified
        return f"{timestamp}.{signature}"
