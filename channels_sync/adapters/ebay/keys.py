"""eBay's notification public keys: checking a key, checking a signature with it, and what
is kept of keys between notifications.

- A key is kept in the shared cache by kid (`EBAY_PUBLIC_KEY_CACHE_SECONDS`) and, for as
  long, in process memory (`kept_key`), so that a cache outage does not stop the kids already
  known from verifying. Only a key that loads as an EC public key `cryptography` can use is
  kept: anything else is "unavailable" (logged, not kept), so one bad answer is not cached
  for an hour.
- Fetching a key eBay's Notification API (`getPublicKey`) costs a call against the
  application's daily call limit ("API call limits",
  https://developer.ebay.com/develop/get-started/api-call-limits). A header names any kid it
  likes, so fetches of kids not yet known are budgeted: `KID_LOOKUPS_PER_MINUTE` per eBay
  application (its client id: the quota's owner), counted in the shared cache before the
  fetch. Without the cache the budget cannot be counted: an unknown kid is then refused
  (the notification is answered 401 and eBay sends it again later), while kids known in
  process memory still verify.
- A kid whose key has verified a notification is remembered as genuine
  (`kid_verified_remember`: in the shared cache for `VERIFIED_KID_SECONDS` and in process
  memory). Fetching its key again (the kept copy expired) skips the budget, so forged
  headers naming random kids, which spend the budget, cannot stop eBay's real key from
  being fetched again (every genuine notification would then be refused). A forger naming
  a genuine kid gains nothing: the key fetched is kept as long as any other.
"""

import threading
import time

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.cache import cache

from core.cache import CACHE_ERRORS, cache_degraded
from core.counters import counter_incr

logger = structlog.get_logger(__name__)

KID_LOOKUPS_PER_MINUTE = 5
KID_BUDGET_KEY = "channels_sync:ebay:kid_lookups:{app}:{minute}"
# Kids kept in process memory at most (eBay serves a handful; forged kids are never kept).
KEPT_KEYS_MAX = 64

# A kid that verified a notification is remembered this long (eBay rotates keys rarely).
VERIFIED_KID_KEY = "channels_sync:ebay:verified_kid:{kid}"
VERIFIED_KID_SECONDS = 30 * 24 * 3600

# kid -> (PEM, time.monotonic() after which it is forgotten)
_kept_keys: dict[str, tuple[str, float]] = {}
_kept_keys_lock = threading.Lock()
# kid -> time.monotonic() after which it is no longer known as verified
_verified_kids: dict[str, float] = {}


class KidLookupRefused(Exception):
    """The application's budget of unknown-kid lookups is spent, or cannot be counted."""


def public_keys_forget() -> None:
    """Drop every key kept in process memory (tests; eBay rotated its keys)."""
    with _kept_keys_lock:
        _kept_keys.clear()
        _verified_kids.clear()


def kept_key(kid: str) -> str | None:
    """The PEM of `kid` kept in process memory, when it has not expired."""
    with _kept_keys_lock:
        kept = _kept_keys.get(kid)
        if kept is None:
            return None
        if kept[1] <= time.monotonic():
            del _kept_keys[kid]
            return None
        return kept[0]


def key_keep(kid: str, pem: str, seconds: float) -> None:
    """Keep a (usable) key in process memory for `seconds`; the oldest goes when full."""
    with _kept_keys_lock:
        _kept_keys.pop(kid, None)
        while len(_kept_keys) >= KEPT_KEYS_MAX:
            del _kept_keys[next(iter(_kept_keys))]
        _kept_keys[kid] = (pem, time.monotonic() + seconds)


def public_key_load(pem: str) -> ec.EllipticCurvePublicKey | None:
    """The EC public key of a PEM; None when it is none, or one `cryptography` cannot use
    (a curve it does not support raises `UnsupportedAlgorithm`, a bad point `ValueError`)."""
    try:
        key = load_pem_public_key(pem.encode("ascii"))
    except Exception as exc:  # whatever the loader raises, the key is unusable
        logger.warning("ebay.public_key_unusable", error=type(exc).__name__)
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def ecdsa_sha1_valid(pem: str, der: bytes, signed: bytes) -> bool:
    """Whether `der` is an ECDSA/SHA-1 signature of exactly these bytes by the PEM key.
    Never raises: a key or signature that cannot be checked is no valid signature."""
    key = public_key_load(pem)
    if key is None:
        return False
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA1()))  # noqa: S303 - eBay's scheme
    except InvalidSignature:
        return False
    except Exception as exc:  # e.g. a hash the backend refuses for this curve
        logger.warning("ebay.signature_check_failed", error=type(exc).__name__)
        return False
    return True


def kid_lookup_allowed(app: str) -> bool:
    """Take one fetch of an unknown kid from the application's budget for this minute
    (`KID_LOOKUPS_PER_MINUTE`); False when it is spent, or when the cache cannot count
    (fail closed: see the module)."""
    minute = int(time.time() // 60)
    count = counter_incr(
        KID_BUDGET_KEY.format(app=app, minute=minute), ttl=120, feature="ebay_kid_budget"
    )
    if count is None:
        logger.warning("ebay.public_key_lookup_refused", reason="cache_unavailable")
        return False
    if count > KID_LOOKUPS_PER_MINUTE:
        if count == KID_LOOKUPS_PER_MINUTE + 1:  # once a minute, not once per forged header
            logger.warning("ebay.public_key_lookup_refused", reason="budget_spent")
        return False
    return True


def kid_verified_remember(kid: str) -> None:
    """Remember that `kid`'s key verified a notification: in process memory and in the
    shared cache (written once per process and lifetime, not once per notification)."""
    now = time.monotonic()
    with _kept_keys_lock:
        if _verified_kids.get(kid, 0.0) > now:
            return
        while len(_verified_kids) >= KEPT_KEYS_MAX:
            del _verified_kids[next(iter(_verified_kids))]
        _verified_kids[kid] = now + VERIFIED_KID_SECONDS
    try:
        cache.set(VERIFIED_KID_KEY.format(kid=kid), 1, timeout=VERIFIED_KID_SECONDS)
    except CACHE_ERRORS as exc:
        cache_degraded("ebay_public_key", exc)


def kid_verified(kid: str) -> bool:
    """Whether `kid`'s key has verified a notification before (this process, or any
    process through the shared cache); False when neither knows (or the cache is down)."""
    with _kept_keys_lock:
        if _verified_kids.get(kid, 0.0) > time.monotonic():
            return True
    try:
        return cache.get(VERIFIED_KID_KEY.format(kid=kid)) is not None
    except CACHE_ERRORS as exc:
        cache_degraded("ebay_public_key", exc)
        return False
