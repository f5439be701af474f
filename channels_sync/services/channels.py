"""Channels and allocation rules: create, change, and the marks such changes need."""

from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_sync.adapters import adapter_class
from channels_sync.models import AllocationRule, Channel, ChannelListing
from channels_sync.services.dirty import listings_mark_dirty
from core.errors import ConflictError, DomainError
from inventory.models import Product, Vendor, Warehouse

logger = structlog.get_logger(__name__)

# Changing one of these can change what the channel (and the channels sharing its products'
# stock) should show.
ALLOCATION_FIELDS = frozenset({"warehouses", "priority", "active", "dry_run", "push_enabled"})


def credentials_clean(channel_type: str, credentials: dict[str, Any]) -> dict[str, Any]:
    """The channel type's credentials, or `invalid_credentials` naming what is wrong."""
    try:
        return adapter_class(channel_type).credentials_clean(credentials)
    except ValueError as exc:
        raise DomainError(str(exc), code="invalid_credentials") from exc


def _expiry(credentials: dict[str, Any]):
    raw = credentials.get("access_token_expires_at")
    parsed = parse_datetime(str(raw)) if raw else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
    return parsed


def _warehouses(vendor: Vendor, codes: list[str]) -> list[Warehouse]:
    found = {w.code: w for w in Warehouse.objects.filter(vendor=vendor, code__in=codes)}
    unknown = [code for code in codes if code not in found]
    if unknown:
        raise DomainError(
            f"Unknown warehouse codes: {', '.join(unknown)}.",
            code="unknown_warehouse",
            details={"codes": unknown},
        )
    return [found[code] for code in codes]


@transaction.atomic
def channel_create(
    *,
    vendor: Vendor,
    name: str,
    type: str,
    base_url: str,
    credentials: dict[str, Any],
    warehouse_codes: list[str],
    actor: str,
    auth_base_url: str = "",
    webhook_secret: str = "",
    priority: int = 100,
    active: bool = True,
    push_enabled: bool = True,
    dry_run: bool = False,
    rate_limit_per_second: float | None = None,
    rate_limit_burst: int | None = None,
    batch_size: int | None = None,
) -> Channel:
    """Create a channel fed by the given warehouses (credentials stored encrypted)."""
    cls = adapter_class(type)
    clean = credentials_clean(type, credentials)
    if batch_size is not None and not 1 <= batch_size <= cls.max_batch_size:
        raise DomainError(
            f"{cls.label} takes at most {cls.max_batch_size} listings per call.",
            code="invalid_batch_size",
        )
    warehouses = _warehouses(vendor, warehouse_codes)
    channel = Channel(
        vendor=vendor,
        name=name,
        type=type,
        base_url=base_url.rstrip("/"),
        auth_base_url=auth_base_url.rstrip("/"),
        credentials=clean,
        webhook_secret=webhook_secret,
        priority=priority,
        active=active,
        push_enabled=push_enabled,
        dry_run=dry_run,
        rate_limit_per_second=rate_limit_per_second,
        rate_limit_burst=rate_limit_burst,
        batch_size=batch_size,
        token_expires_at=_expiry(clean),
    )
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError as exc:
        raise ConflictError(
            f"A channel named {name!r} exists already.", code="channel_exists"
        ) from exc
    channel.warehouses.set(warehouses)
    logger.info("channel.created", channel_id=channel.pk, type=type, actor=actor)
    return channel


@transaction.atomic
def channel_update(
    *,
    channel: Channel,
    actor: str,
    credentials: dict[str, Any] | None = None,
    warehouse_codes: list[str] | None = None,
    **changes: Any,
) -> Channel:
    """Change a channel. New credentials are merged into the stored ones and clear the
    re-authorisation flag; changes that move allocations mark the listings dirty."""
    channel = Channel.objects.select_for_update().get(pk=channel.pk)
    changed: set[str] = set()
    for name, value in changes.items():
        if name not in {
            "name",
            "base_url",
            "auth_base_url",
            "webhook_secret",
            "priority",
            "active",
            "push_enabled",
            "dry_run",
            "rate_limit_per_second",
            "rate_limit_burst",
            "batch_size",
        }:
            raise DomainError(f"{name} cannot be changed.", code="invalid_field")
        if name in {"base_url", "auth_base_url"} and isinstance(value, str):
            value = value.rstrip("/")
        if getattr(channel, name) != value:
            setattr(channel, name, value)
            changed.add(name)
    max_batch = adapter_class(channel.type).max_batch_size
    if channel.batch_size is not None and not 1 <= channel.batch_size <= max_batch:
        raise DomainError(
            f"This marketplace takes at most {max_batch} listings per call.",
            code="invalid_batch_size",
        )
    if credentials:
        merged = credentials_clean(channel.type, {**(channel.credentials or {}), **credentials})
        channel.credentials = merged
        channel.token_expires_at = _expiry(merged)
        channel.needs_reauth = False
        channel.reauth_reason = ""
        changed.add("credentials")
    if warehouse_codes is not None:
        warehouses = _warehouses(channel.vendor, warehouse_codes)
        if {w.pk for w in warehouses} != set(channel.warehouses.values_list("pk", flat=True)):
            channel.warehouses.set(warehouses)
            changed.add("warehouses")
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError as exc:
        raise ConflictError(
            f"A channel named {channel.name!r} exists already.", code="channel_exists"
        ) from exc
    if "base_url" in changed:
        # Another endpoint (another shop) has never received our pushes: send everything.
        ChannelListing.objects.filter(channel=channel).update(last_pushed_quantity=None)
    if changed & ALLOCATION_FIELDS or changed & {"credentials", "base_url"}:
        _mark_sharing_products(channel)
    logger.info("channel.updated", channel_id=channel.pk, changed=sorted(changed), actor=actor)
    return channel


def _mark_sharing_products(channel: Channel) -> None:
    """Mark the channel's listings, and the other channels' listings of its products."""
    product_ids = list(
        ChannelListing.objects.filter(channel=channel).values_list("product_id", flat=True)
    )
    listings_mark_dirty(channel_id=channel.pk)
    if product_ids:
        others = ChannelListing.objects.filter(product_id__in=product_ids).exclude(channel=channel)
        listings_mark_dirty(listing_ids=others.values_list("pk", flat=True))


def _decimal(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise DomainError(f"{field} is not a number.", code="invalid_rule") from exc
    if not number.is_finite() or number < 0:
        raise DomainError(f"{field} must be zero or more.", code="invalid_rule")
    return number


@transaction.atomic
def rule_set(
    *,
    channel: Channel,
    actor: str,
    strategy: str,
    scope: str = AllocationRule.Scope.CHANNEL,
    sku: str | None = None,
    listing_id: int | None = None,
    parameter: Any = None,
    buffer_units: Any = 0,
    buffer_percent: Any = 0,
    max_shown: int | None = None,
    zero_below: int | None = None,
) -> tuple[AllocationRule, bool]:
    """Create or replace the channel's rule for a scope; return it and whether it is new.

    The affected listings (and, for shared-pool strategies, the other channels' listings
    of the same products) are marked dirty.
    """
    if strategy not in AllocationRule.Strategy.values:
        raise DomainError(f"Unknown strategy {strategy!r}.", code="invalid_rule")
    param = _decimal(parameter, "parameter")
    if strategy == AllocationRule.Strategy.PERCENTAGE and (param is None or param > 100):
        raise DomainError("A percentage rule needs a parameter of 0 to 100.", code="invalid_rule")
    if strategy == AllocationRule.Strategy.FIXED and param is None:
        raise DomainError("A fixed rule needs the quantity as parameter.", code="invalid_rule")
    units = _decimal(buffer_units, "buffer_units") or Decimal(0)
    percent = _decimal(buffer_percent, "buffer_percent") or Decimal(0)
    if percent > 100:
        raise DomainError("buffer_percent must be 0 to 100.", code="invalid_rule")
    target: dict[str, Any] = {"channel": channel, "scope": scope}
    if scope == AllocationRule.Scope.PRODUCT:
        product = Product.objects.filter(vendor_id=channel.vendor_id, sku=sku or "").first()
        if product is None:
            raise DomainError(f"Unknown SKU {sku!r}.", code="unknown_sku")
        target["product"] = product
    elif scope == AllocationRule.Scope.LISTING:
        listing = ChannelListing.objects.filter(channel=channel, pk=listing_id or 0).first()
        if listing is None:
            raise DomainError(f"Unknown listing {listing_id!r}.", code="unknown_listing")
        target["listing"] = listing
    elif scope != AllocationRule.Scope.CHANNEL:
        raise DomainError(f"Unknown scope {scope!r}.", code="invalid_rule")
    rule, created = AllocationRule.objects.select_for_update().get_or_create(
        **target,
        defaults={"strategy": strategy},
    )
    rule.strategy = strategy
    rule.parameter = param
    rule.buffer_units = units
    rule.buffer_percent = percent
    rule.max_shown = max_shown
    rule.zero_below = zero_below
    rule.save()
    affected = ChannelListing.objects.filter(channel=channel)
    if scope == AllocationRule.Scope.PRODUCT:
        affected = ChannelListing.objects.filter(product=target["product"])
    elif scope == AllocationRule.Scope.LISTING:
        affected = ChannelListing.objects.filter(product_id=target["listing"].product_id)
    else:
        product_ids = affected.values_list("product_id", flat=True)
        affected = ChannelListing.objects.filter(product_id__in=product_ids)
    listings_mark_dirty(listing_ids=affected.values_list("pk", flat=True))
    logger.info(
        "allocation_rule.saved", channel_id=channel.pk, scope=scope, created=created, actor=actor
    )
    return rule, created
