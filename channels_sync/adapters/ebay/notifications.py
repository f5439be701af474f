"""eBay notifications: the endpoint check, the `X-EBAY-SIGNATURE` check and the parsing.

- Endpoint validation (eBay "Marketplace account deletion/closure notifications",
  https://developer.ebay.com/marketplace-account-deletion, and the official SDKs'
  `validateEndpoint`): eBay sends `GET <endpoint>?challenge_code=X` and wants 200 with
  `{"challengeResponse": hex(SHA-256(challenge_code + verification_token + endpoint_url))}`,
  the endpoint URL exactly as registered.
- Signature (eBay event-notification SDKs, e.g. github.com/eBay/event-notification-nodejs-sdk
  `lib/validator.js`): the header is base64 of `{"alg":"ecdsa","kid","signature","digest":
  "SHA1"}`; the public key comes from `GET /commerce/notification/v1/public_key/{kid}`
  (Notification API `getPublicKey`, with an application token) as a PEM without line breaks;
  `signature` is a base64 DER ECDSA P-256 signature with SHA-1. The SDKs verify over the
  message re-serialised compactly (`JSON.stringify`), so the raw body is tried first and the
  compact form second. Keys are kept in the shared cache and in process memory by kid
  (`EBAY_PUBLIC_KEY_CACHE_SECONDS`); lookups of kids not yet known are budgeted per eBay
  application, and refused while the cache is down (see `keys`). A kid eBay does not know
  is remembered briefly so that a flood of forged headers costs one lookup.
- Payload (Notification API, e.g. https://developer.ebay.com/api-docs/master/commerce/notification/asyncapi/order_confirmation.yaml):
  `{"metadata": {"topic", "schemaVersion", "deprecated"}, "notification": {"notificationId",
  "eventDate", "publishDate", "publishAttemptCount", "data": {...}}}`; the event key is
  `notificationId` (eBay keeps it across its retries). eBay wants 204 (an empty 2xx).

Topics: `MARKETPLACE_ACCOUNT_DELETION` is kept and ignored (`other`): the product keeps no
eBay buyer accounts of its own, but a merchant must still delete or anonymise that user's
personal data in the orders kept here (customer and address) within eBay's deadline. Any
notification whose `data` names an `orderId` (`ORDER_CONFIRMATION`, `ITEM_MARKED_SHIPPED`:
the exact topic ids are not confirmed, so the data decides) is an `order` event; the status
stored with it is the topic, the order itself is read back. `ITEM_AVAILABILITY` (and any
other topic) is a `stock` event only when its data names a `sku`, an `offerId` and
optionally a quantity (`availableQuantity` or `quantity`); its documented payload names an
`itemId` and an availability type, which say nothing about a quantity: `other`.
"""

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime
from typing import Any, ClassVar

import structlog
from django.conf import settings
from django.core.cache import cache
from django.utils.dateparse import parse_datetime

from channels_sync.adapters.base import (
    AdapterError,
    ChannelEvent,
    StockReport,
    _header,
    answer_digest,
    answer_int,
    answer_json,
    answer_text,
    stock_observed,
    unreadable,
)
from channels_sync.adapters.ebay.client import EbayClient, path_segment
from channels_sync.adapters.ebay.keys import (
    KidLookupRefused,
    ecdsa_sha1_valid,
    kept_key,
    key_keep,
    kid_lookup_allowed,
    kid_verified,
    kid_verified_remember,
    public_key_load,
)
from core.cache import CACHE_ERRORS, cache_degraded
from core.correlation import get_correlation_id
from core.http import OutboundError

logger = structlog.get_logger(__name__)

PUBLIC_KEY_PATH = "/commerce/notification/v1/public_key/{kid}"
SIGNATURE_HEADER = "X-EBAY-SIGNATURE"
KEY_CACHE = "channels_sync:ebay:public_key:{kid}"
UNKNOWN_KID = "unknown"  # cached in place of a key eBay answered 404 for
UNKNOWN_KID_SECONDS = 300
# A header longer than this is no eBay signature (a real one is about 250 characters).
SIGNATURE_HEADER_MAX = 4096
# Key ids are UUIDs; anything else never reaches the key lookup's URL.
KID_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
PEM_PATTERN = re.compile(
    r"-----BEGIN PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END PUBLIC KEY-----"
)
TOPIC_ACCOUNT_DELETION = "MARKETPLACE_ACCOUNT_DELETION"


def challenge_response(*, challenge_code: str, verification_token: str, endpoint_url: str) -> str:
    """The endpoint check's answer: hex SHA-256 of code + verification token + endpoint URL."""
    digest = hashlib.sha256()
    for part in (challenge_code, verification_token, endpoint_url):
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


def pem_rebuild(key: str) -> str:
    """The PEM of a key as eBay serves it (no line breaks): a break after the BEGIN line and
    one before the END line, as the official SDKs do. `ValueError` when it is no PEM key."""
    match = PEM_PATTERN.fullmatch(key.strip())
    if match is None:
        raise ValueError("not a PEM public key")
    body = "".join(match.group(1).split())
    return f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----"


def signature_header_read(value: str) -> tuple[str, bytes] | None:
    """(kid, DER signature) from an `X-EBAY-SIGNATURE` header, or None when it is not one
    (not base64 JSON, another algorithm or digest, a kid that is not a key id)."""
    value = value.strip()
    if not value or len(value) > SIGNATURE_HEADER_MAX or not value.isascii():
        return None
    try:
        decoded = json.loads(base64.b64decode(value, validate=True))
    except (ValueError, RecursionError, binascii.Error):
        return None
    if not isinstance(decoded, dict):
        return None
    alg, digest = decoded.get("alg"), decoded.get("digest")
    kid, signature = decoded.get("kid"), decoded.get("signature")
    if not all(isinstance(v, str) for v in (alg, digest, kid, signature)):
        return None
    if alg.lower() != "ecdsa" or digest.upper() != "SHA1" or not KID_PATTERN.fullmatch(kid):
        return None
    try:
        der = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return None
    return (kid, der) if der else None


def signed_candidates(body: bytes) -> list[bytes]:
    """The bytes a signature may cover: the raw body, then its compact re-serialisation (key
    order kept, no spaces, non-ASCII as is: `JSON.stringify`), when that differs."""
    candidates = [body]
    try:
        compact = json.dumps(
            json.loads(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (ValueError, RecursionError):  # not JSON (or UTF-8), a lone surrogate, nesting
        return candidates
    if compact != body:
        candidates.append(compact)
    return candidates


def compact_digest(body: bytes) -> str:
    """Hex SHA-256 of the body's compact form (`signed_candidates`): whitespace variants of
    one signed message have one digest."""
    return hashlib.sha256(signed_candidates(body)[-1]).hexdigest()


def signature_valid(pem: str, der: bytes, body: bytes) -> bool:
    """Whether `der` signs the body, raw or re-serialised compactly (`signed_candidates`)."""
    return any(ecdsa_sha1_valid(pem, der, signed) for signed in signed_candidates(body))


class EbayNotifications(EbayClient):
    """The endpoint check, the signature check and the parsing of eBay notifications."""

    webhook_signature_header = SIGNATURE_HEADER
    # eBay's SDKs answer 204 No Content to a verified notification.
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (204, b"", "text/plain")

    def webhook_challenge(
        self, *, query: dict[str, str], url: str
    ) -> tuple[int, bytes, str] | None:
        """Answer eBay's `GET ?challenge_code=X` of the endpoint (200 with the
        `challengeResponse`); 400 in the API's error shape without a code or without the
        channel's verification token."""
        code = query.get("challenge_code", "")
        token = str(self.credentials.get("verification_token") or "")
        if not code or not token:
            error = (
                ("challenge_code_missing", "The challenge_code query parameter is required.")
                if not code
                else ("verification_token_missing", "The channel has no verification token.")
            )
            body = {
                "code": error[0],
                "message": error[1],
                "details": {},
                "correlation_id": get_correlation_id(),
            }
            return 400, json.dumps(body).encode(), "application/json"
        answer = challenge_response(challenge_code=code, verification_token=token, endpoint_url=url)
        return 200, json.dumps({"challengeResponse": answer}).encode(), "application/json"

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """eBay signs with its own private key: a signature can be checked
        (`webhook_verify`), never made here."""
        raise NotImplementedError("eBay notifications are signed with eBay's private key")

    def webhook_verify(self, *, headers: dict[str, str], body: bytes, url: str = "") -> bool:
        """Whether `X-EBAY-SIGNATURE` is eBay's signature of this body (raw or compact).

        False for a missing or malformed header, an unknown key id, and when the key cannot
        be fetched (logged `ebay.public_key_unavailable`: eBay retries the notification, so
        nothing is lost). Never raises.
        """
        read = signature_header_read(_header(headers, SIGNATURE_HEADER))
        if read is None:
            return False
        kid, der = read
        pem = self.public_key(kid)
        if pem is None:
            return False
        if not signature_valid(pem, der, body):
            return False
        kid_verified_remember(kid)
        return True

    def public_key(self, kid: str) -> str | None:
        """eBay's public key `kid` as a PEM: kept in process memory, else from the shared
        cache, else fetched (within the application's budget of unknown-kid lookups) and
        kept; None when eBay does not know it, it cannot be fetched now, the budget is spent
        or the cache is down (see `keys`), or what eBay served is no usable key (logged,
        never kept)."""
        pem = kept_key(kid)
        if pem is not None:
            return pem
        cache_key = KEY_CACHE.format(kid=kid)
        try:
            kept = cache.get(cache_key)
        except CACHE_ERRORS as exc:
            cache_degraded("ebay_public_key", exc)
            # Fail closed: without the cache no lookup budget can be kept (a kid this process
            # saw verify needs none, and is fetched again).
            if not kid_verified(kid):
                logger.warning(
                    "ebay.public_key_lookup_refused", kid=kid, reason="cache_unavailable"
                )
                return None
            kept = None
        if kept == UNKNOWN_KID:
            return None
        if isinstance(kept, str) and public_key_load(kept) is not None:
            key_keep(kid, kept, settings.EBAY_PUBLIC_KEY_CACHE_SECONDS)
            return kept
        try:
            pem = self._public_key_fetch(kid)
        except KidLookupRefused:
            return None  # logged by the budget, once a minute
        except AdapterError as exc:
            logger.warning(
                "ebay.public_key_unavailable", kid=kid, outcome=str(exc.outcome), error=str(exc)
            )
            return None
        if pem is not None and public_key_load(pem) is None:
            logger.warning("ebay.public_key_unavailable", kid=kid, error="no usable EC key")
            return None
        try:
            if pem is None:
                cache.set(cache_key, UNKNOWN_KID, timeout=UNKNOWN_KID_SECONDS)
            else:
                cache.set(cache_key, pem, timeout=settings.EBAY_PUBLIC_KEY_CACHE_SECONDS)
        except CACHE_ERRORS as exc:
            cache_degraded("ebay_public_key", exc)
        if pem is not None:
            key_keep(kid, pem, settings.EBAY_PUBLIC_KEY_CACHE_SECONDS)
        return pem

    def _public_key_fetch(self, kid: str) -> str | None:
        """GET the key with the application token (a refused token is replaced once), when
        the application's lookup budget allows (`KidLookupRefused` otherwise; taken once the
        token is in hand, so a refused grant spends none; a kid that verified before needs
        no budget: see `keys`). Returns None for a kid eBay
        answers 404 for; raises `AdapterError` otherwise."""
        path = PUBLIC_KEY_PATH.format(kid=path_segment(kid))
        token = self.app_token()
        if not kid_verified(kid) and not kid_lookup_allowed(self.app_digest()):
            raise KidLookupRefused(kid)
        for fresh in (False, True):
            if fresh:
                token = self.app_token(fresh=True)
            try:
                response, _ = self._call("GET", path, token=token)
            except OutboundError as exc:
                raise AdapterError(f"public key: {exc}") from None
            if response.status_code == 401 and not fresh:
                continue
            break
        body = answer_json(response)
        if response.status_code == 404:
            logger.warning("ebay.public_key_unknown", kid=kid)
            return None
        if response.status_code != 200 or body is None:
            raise AdapterError(
                f"public key: HTTP {response.status_code} {self.excerpt(response.content)}"
            )
        key = body.get("key")
        try:
            return pem_rebuild(key if isinstance(key, str) else "")
        except ValueError:
            raise AdapterError("public key: the answer holds no PEM key") from None

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified notification (never raises; see the module's topics).

        The key is `notification.notificationId` (one unfit to store: a digest of the body's
        compact form; none: a digest of order id, topic and event date, or of the body's
        compact form, so that eBay's message re-spaced is the same event). An order id that
        is present but unfit to store makes the event `unreadable`; a body that is not the
        `metadata` + `notification` envelope is `unreadable`.
        """
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):
            envelope = None
        if not isinstance(envelope, dict):
            return unreadable(body)
        metadata, notification = envelope.get("metadata"), envelope.get("notification")
        if not isinstance(metadata, dict) or not isinstance(notification, dict):
            return unreadable(body)
        topic = answer_text(metadata.get("topic"))
        data = notification.get("data") if isinstance(notification.get("data"), dict) else {}
        raw_id = notification.get("notificationId")
        notification_id = answer_text(raw_id, limit=200)
        if not notification_id and raw_id not in (None, ""):
            notification_id = compact_digest(body)
        event_date = _iso_datetime(notification.get("eventDate"))
        if topic == TOPIC_ACCOUNT_DELETION:
            return ChannelEvent(topic="other", event_key=notification_id or compact_digest(body))
        order_id = answer_text(data.get("orderId"))
        if data.get("orderId") not in (None, "") and not order_id:
            return unreadable(body)
        if order_id:
            key = notification_id or answer_digest(
                order_id, topic, event_date.isoformat() if event_date else ""
            )
            return ChannelEvent(
                topic="order", event_key=key, order_id=order_id, status=topic, updated_at=event_date
            )
        key = notification_id or compact_digest(body)
        sku = answer_text(data.get("sku"), limit=200)
        offer_id = answer_text(data.get("offerId"))
        if sku and offer_id:
            raw_quantity = data.get("availableQuantity", data.get("quantity"))
            keys = {"sku": sku, "offer_id": offer_id}
            quantity = stock_observed(answer_int(raw_quantity), channel_type=self.type, keys=keys)
            return ChannelEvent(
                topic="stock",
                event_key=key,
                updated_at=event_date,
                stock=(StockReport(keys=keys, quantity=quantity),),
            )
        return ChannelEvent(topic="other", event_key=key)


def _iso_datetime(value: Any) -> datetime | None:
    """An aware datetime from eBay's ISO-8601 UTC text (`2021-03-19T20:43:59.462Z`)."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return moment
