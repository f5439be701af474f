"""API keys: format, verification, DRF authentication, scope permission, per-key throttle.

A key reads `ssk_<prefix>_<secret>`. The prefix finds the row; the SHA-256 of the whole key
is compared in constant time (the secret is 256 random bits, so a slow hash adds nothing).
Clients send it as `Authorization: Api-Key <key>` or `X-API-Key: <key>`.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core.cache import CACHE_ERRORS, cache_degraded
from core.counters import counter_incr
from core.models import ApiKey

KEY_PREFIX = "ssk_"
SCOPES = {choice.value for choice in ApiKey.Scope}
# `admin` may do everything `read` and `write` may; `agent` is for ERP agents only.
IMPLIED_SCOPES = {"admin": {"read", "write"}}


def api_key_generate() -> tuple[str, str, str]:
    """Return a new (full key, prefix, hash)."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, api_key_hash(key)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# Verified keys are read on every request: their rows are cached in the shared cache. A
# miss fills the cache with `add`, which never overwrites an entry; every change to a key
# overwrites the entry with the committed row after commit. So a request that read the row
# just before a revocation committed cannot put the old row back.
_KEY_CACHE_SECONDS = 60


def _key_cache_key(prefix: str) -> str:
    return f"api_key:{prefix}"


# The cache only saves a query: when it fails the row is read from the database. A change
# whose refresh could not reach the cache leaves its prefix here, and this process's first
# lookup that reaches the cache again drops those entries: an entry cached before an outage
# (Redis unreachable, not restarted) must not keep a key revoked during it alive for the
# rest of its 60 seconds.
_unrefreshed: set[str] = set()


def api_key_by_prefix(prefix: str) -> ApiKey | None:
    """The key with this prefix, from the cache or the database (misses cached too).

    Reads the database alone when the cache is down (recorded as degraded `api_key_cache`).
    """
    try:
        _drop_unrefreshed()
        cached = cache.get(_key_cache_key(prefix))
    except CACHE_ERRORS as exc:
        cache_degraded("api_key_cache", exc)
        return ApiKey.objects.filter(prefix=prefix).first()
    if cached is None:
        cached = ApiKey.objects.filter(prefix=prefix).first() or False
        try:
            cache.add(_key_cache_key(prefix), cached, timeout=_KEY_CACHE_SECONDS)
        except CACHE_ERRORS as exc:
            cache_degraded("api_key_cache", exc)
    return cached or None


def _drop_unrefreshed() -> None:
    if not _unrefreshed:
        return
    prefixes = list(_unrefreshed)
    cache.delete_many([_key_cache_key(prefix) for prefix in prefixes])
    _unrefreshed.difference_update(prefixes)


def api_key_refresh(prefix: str) -> None:
    """After the current transaction commits, cache the key's committed row.

    When the cache is down the entry is dropped at the first lookup that reaches it again.
    """

    def refresh() -> None:
        # Holding the row lock while caching makes concurrent changes of one key cache
        # their rows in commit order: a later change waits, then caches its own row.
        with transaction.atomic():
            row = ApiKey.objects.select_for_update().filter(prefix=prefix).first() or False
            try:
                cache.set(_key_cache_key(prefix), row, timeout=_KEY_CACHE_SECONDS)
            except CACHE_ERRORS as exc:
                _unrefreshed.add(prefix)
                cache_degraded("api_key_cache", exc)

    transaction.on_commit(refresh, robust=True)


def api_key_verify(key: str) -> ApiKey:
    """Return the active key matching `key`, or raise `AuthenticationFailed`."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        raise exceptions.AuthenticationFailed("Malformed API key.", code="invalid_api_key")
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    api_key = api_key_by_prefix(prefix)
    if api_key is None or not hmac.compare_digest(api_key.key_hash, api_key_hash(key)):
        raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
    if api_key.revoked_at is not None:
        raise exceptions.AuthenticationFailed("This API key was revoked.", code="api_key_revoked")
    return api_key


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: an API key and its scopes (DRF's `request.user`)."""

    api_key: ApiKey
    is_authenticated: bool = True
    is_anonymous: bool = False

    @property
    def scopes(self) -> set[str]:
        granted = set(self.api_key.scopes)
        for scope in list(granted):
            granted |= IMPLIED_SCOPES.get(scope, set())
        return granted

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def actor(self) -> str:
        return f"api_key:{self.api_key.name}"

    @property
    def owner(self) -> str:
        """The namespace of this caller's idempotency keys."""
        return f"api_key:{self.api_key.pk}"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate `Authorization: Api-Key <key>` or `X-API-Key: <key>`."""

    keyword = "Api-Key"

    def authenticate(self, request: Request) -> tuple[ApiPrincipal, ApiKey] | None:
        key = None
        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == self.keyword.lower():
                key = value.strip()
        if key is None:
            key = request.META.get("HTTP_X_API_KEY")
        if key is None:
            return None
        api_key = api_key_verify(key.strip())
        structlog.contextvars.bind_contextvars(client=api_key.name)
        return ApiPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def required_scope(view: object, request: Request) -> str:
    """The scope a view needs for this request: `required_scopes[method]`, else by method."""
    declared = getattr(view, "required_scopes", None) or {}
    if request.method in declared:
        return declared[request.method]
    if "*" in declared:
        return declared["*"]
    return "read" if request.method in SAFE_METHODS else "write"


class HasScope(BasePermission):
    """Allow an API key whose scopes include the one the view needs."""

    code = "insufficient_scope"
    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: object) -> bool:
        principal = request.user
        if not isinstance(principal, ApiPrincipal):
            return False
        scope = required_scope(view, request)
        if principal.has_scope(scope):
            return True
        self.message = f"This API key lacks the '{scope}' scope."
        return False


class ApiKeyThrottle(BaseThrottle):
    """Count each key's requests in one-minute windows, atomically in the shared cache.

    Over the key's limit answers 429 with `Retry-After` (the rest of the window). When the
    cache is down every request is let through (fails open, logged and counted). The first
    request of each window also records the key's `last_used_at`, so "last used" costs one
    write per key per minute, not one per request.
    """

    def __init__(self) -> None:
        self.retry_after: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        if api_key is None:
            return True
        now = time.time()
        count = counter_incr(
            f"throttle:api_key:{api_key.pk}:{int(now // 60)}", ttl=120, feature="api_key_throttle"
        )
        if count is None:
            # The cache is down: serve rather than refuse (counted); `last_used_at` waits
            # for the first counted request, or it would be written on every request.
            return True
        if count == 1:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
        limit = api_key.rate_limit_per_minute or settings.API_KEY_RATE_LIMIT_PER_MINUTE
        if count > limit:
            self.retry_after = 60 - (now % 60)
            return False
        return True

    def wait(self) -> float | None:
        return self.retry_after
