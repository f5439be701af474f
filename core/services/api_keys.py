"""API keys: create, update, revoke (the cache entry follows every change)."""

from dataclasses import dataclass

import structlog
from django.utils import timezone

from core.auth import SCOPES, api_key_generate, api_key_refresh
from core.errors import DomainError
from core.models import ApiKey

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # the full key: shown once, never stored


def _scopes_check(scopes: list[str]) -> None:
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        raise DomainError(
            f"Unknown or missing scopes: {', '.join(unknown) or 'none given'}.",
            code="invalid_scopes",
            details={"allowed": sorted(SCOPES)},
        )


def api_key_create(
    *,
    name: str,
    scopes: list[str],
    created_by: str = "",
    rate_limit_per_minute: int | None = None,
) -> CreatedApiKey:
    """Create an API key; the full key is returned here and nowhere else."""
    _scopes_check(scopes)
    key, prefix, key_hash = api_key_generate()
    api_key = ApiKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=key_hash,
        scopes=sorted(set(scopes)),
        created_by=created_by,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    api_key_refresh(prefix)  # a lookup of this prefix before it existed may be cached
    logger.info("api_key.created", key_name=name, prefix=prefix, scopes=api_key.scopes)
    return CreatedApiKey(api_key=api_key, key=key)


def api_key_update(
    *, api_key: ApiKey, name: str, scopes: list[str], rate_limit_per_minute: int | None
) -> ApiKey:
    """Rename a key or change its scopes or rate limit (takes effect on the next request)."""
    _scopes_check(scopes)
    api_key.name = name
    api_key.scopes = sorted(set(scopes))
    api_key.rate_limit_per_minute = rate_limit_per_minute
    api_key.save(update_fields=["name", "scopes", "rate_limit_per_minute", "updated_at"])
    api_key_refresh(api_key.prefix)
    logger.info("api_key.updated", key_name=name, prefix=api_key.prefix, scopes=api_key.scopes)
    return api_key


def api_key_revoke(*, api_key: ApiKey, revoked_by: str = "") -> ApiKey:
    """Revoke a key at once (idempotent: a revoked key keeps its first revocation)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.revoked_by = revoked_by
        api_key.save(update_fields=["revoked_at", "revoked_by", "updated_at"])
        api_key_refresh(api_key.prefix)
        logger.info("api_key.revoked", key_name=api_key.name, prefix=api_key.prefix)
    return api_key
