"""Channels and allocation rules: create, change, and the marks such changes need.

The rules of a valid channel and a valid allocation rule live here and nowhere else: a
refusal is a `DomainError` whose `details["field"]` names the argument at fault, which the
API and the admin show on their own field (`core.field_errors.service_errors`). The admin
forms validate with `channel_check` and `rule_check`, the same checks the writes run.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_sync.adapters import adapter_class
from channels_sync.models import AllocationRule, Channel, ChannelListing, ConflictPolicy
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
        raise DomainError(
            str(exc), code="invalid_credentials", details={"field": "credentials"}
        ) from exc


def options_clean(channel_type: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The channel type's settings (`Channel.options`), or `invalid_options` naming what is
    wrong."""
    try:
        return adapter_class(channel_type).options_clean(options or {})
    except ValueError as exc:
        raise DomainError(str(exc), code="invalid_options", details={"field": "options"}) from exc


def settings_check(channel_type: str, options: dict[str, Any], credentials: dict[str, Any]) -> None:
    """Refuse credentials that do not suit the options (both cleaned), e.g. a custom REST
    shop whose `options.auth` needs a credential that is missing: `invalid_credentials`
    naming it."""
    try:
        adapter_class(channel_type).settings_check(options, credentials)
    except ValueError as exc:
        raise DomainError(
            str(exc), code="invalid_credentials", details={"field": "credentials"}
        ) from exc


def batch_size_check(channel_type: str, batch_size: int | None) -> None:
    """Refuse a batch size the marketplace does not take (`invalid_batch_size`)."""
    cls = adapter_class(channel_type)
    if batch_size is not None and not 1 <= batch_size <= cls.max_batch_size:
        raise DomainError(
            f"{cls.label} takes 1 to {cls.max_batch_size} listings per call.",
            code="invalid_batch_size",
            details={"field": "batch_size", "max_batch_size": cls.max_batch_size},
        )


def _expiry(credentials: dict[str, Any]):
    raw = credentials.get("access_token_expires_at")
    parsed = parse_datetime(str(raw)) if raw else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_current_timezone())
    return parsed


def channel_warehouses(vendor: Vendor, warehouses: Sequence[str | Warehouse]) -> list[Warehouse]:
    """The vendor's warehouses by code (or as given), or `unknown_warehouse` naming the rest.

    A warehouse of another vendor is refused like an unknown code: a channel sells only its
    own vendor's stock.
    """
    given = {w.code: w for w in warehouses if isinstance(w, Warehouse)}
    codes = [w.code if isinstance(w, Warehouse) else w for w in warehouses]
    found = {w.code: w for w in Warehouse.objects.filter(vendor=vendor, code__in=codes)}
    unknown = [
        code
        for code in codes
        if code not in found or (code in given and given[code].pk != found[code].pk)
    ]
    if unknown:
        raise DomainError(
            f"Not warehouses of {vendor}: {', '.join(unknown)}.",
            code="unknown_warehouse",
            details={"field": "warehouses", "codes": unknown},
        )
    return [found[code] for code in codes]


def channel_check(
    *,
    vendor: Vendor,
    type: str,
    warehouses: Sequence[str | Warehouse],
    credentials: dict[str, Any] | None,
    batch_size: int | None,
    channel: Channel | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, list[Warehouse]]:
    """Check a new channel's settings, or the changed settings of `channel`; write nothing.

    Returns the cleaned credentials (merged into the channel's stored ones; None when none
    are given for an existing channel) and the warehouses. `options` are the cleaned
    options (`options_clean`; None for an existing channel: unchanged): when the channel is
    new, or its credentials or options change, the two are checked together
    (`settings_check`). `channel_create` and `channel_update` run the same checks.
    """
    clean = None
    if channel is None or credentials:
        stored = channel.credentials if channel is not None else {}
        clean = credentials_clean(type, {**(stored or {}), **(credentials or {})})
    if channel is None or clean is not None or options is not None:
        settings_check(
            type,
            options if options is not None else (channel.options if channel else {}) or {},
            clean if clean is not None else (channel.credentials if channel else {}) or {},
        )
    batch_size_check(type, batch_size)
    return clean, channel_warehouses(vendor, warehouses)


def conflict_policy_check(policy: str) -> None:
    """Refuse a policy that is neither a strategy nor manual (`invalid_conflict_policy`)."""
    if policy not in ConflictPolicy.values:
        raise DomainError(
            f"Unknown conflict policy {policy!r}; one of: {', '.join(ConflictPolicy.values)}.",
            code="invalid_conflict_policy",
            details={"field": "conflict_policy"},
        )


def _channel_exists(name: str) -> ConflictError:
    return ConflictError(
        f"A channel named {name!r} exists already.",
        code="channel_exists",
        details={"field": "name"},
    )


@transaction.atomic
def channel_create(
    *,
    vendor: Vendor,
    name: str,
    type: str,
    base_url: str,
    credentials: dict[str, Any],
    warehouses: Sequence[str | Warehouse],
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
    conflict_policy: str = ConflictPolicy.USE_OURS,
    options: dict[str, Any] | None = None,
) -> Channel:
    """Create a channel fed by the given warehouses (codes or rows; credentials stored
    encrypted). Refuses what `channel_check` refuses, and a taken name (`channel_exists`)."""
    conflict_policy_check(conflict_policy)
    clean_options = options_clean(type, options)
    clean, feeding = channel_check(
        vendor=vendor,
        type=type,
        warehouses=warehouses,
        credentials=credentials,
        batch_size=batch_size,
        options=clean_options,
    )
    channel = Channel(
        vendor=vendor,
        name=name,
        type=type,
        base_url=base_url.rstrip("/"),
        auth_base_url=auth_base_url.rstrip("/"),
        credentials=clean,
        options=clean_options,
        webhook_secret=webhook_secret,
        priority=priority,
        active=active,
        push_enabled=push_enabled,
        dry_run=dry_run,
        rate_limit_per_second=rate_limit_per_second,
        rate_limit_burst=rate_limit_burst,
        batch_size=batch_size,
        conflict_policy=conflict_policy,
        token_expires_at=_expiry(clean),
    )
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError as exc:
        raise _channel_exists(name) from exc
    channel.warehouses.set(feeding)
    logger.info("channel.created", channel_id=channel.pk, type=type, actor=actor)
    return channel


@transaction.atomic
def channel_update(
    *,
    channel: Channel,
    actor: str,
    credentials: dict[str, Any] | None = None,
    warehouses: Sequence[str | Warehouse] | None = None,
    **changes: Any,
) -> Channel:
    """Change a channel. New credentials are merged into the stored ones and clear the
    re-authorisation flag; changes that move allocations mark the listings dirty."""
    channel = Channel.objects.select_for_update().get(pk=channel.pk)
    changed: set[str] = set()
    new_options = None
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
            "conflict_policy",
            "options",
        }:
            raise DomainError(
                f"{name} cannot be changed.", code="invalid_field", details={"field": name}
            )
        if name in {"base_url", "auth_base_url"} and isinstance(value, str):
            value = value.rstrip("/")
        if name == "conflict_policy":
            conflict_policy_check(value)
        if name == "options":
            value = new_options = options_clean(channel.type, value)
        if getattr(channel, name) != value:
            setattr(channel, name, value)
            changed.add(name)
    merged, feeding = channel_check(
        vendor=channel.vendor,
        type=channel.type,
        warehouses=warehouses or [],
        credentials=credentials,
        batch_size=channel.batch_size,
        channel=channel,
        options=new_options,
    )
    if merged is not None:
        channel.credentials = merged
        channel.token_expires_at = _expiry(merged)
        channel.needs_reauth = False
        channel.reauth_reason = ""
        changed.add("credentials")
    if warehouses is not None and {w.pk for w in feeding} != set(
        channel.warehouses.values_list("pk", flat=True)
    ):
        channel.warehouses.set(feeding)
        changed.add("warehouses")
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError as exc:
        raise _channel_exists(channel.name) from exc
    if "base_url" in changed:
        # Another endpoint (another shop) has never received our pushes: send everything,
        # expecting nothing known of it.
        ChannelListing.objects.filter(channel=channel).update(
            last_pushed_quantity=None, channel_quantity=None
        )
    if changed & ALLOCATION_FIELDS or changed & {"credentials", "base_url", "options"}:
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


def _rule_error(message: str, field: str, code: str = "invalid_rule") -> DomainError:
    return DomainError(message, code=code, details={"field": field})


def _decimal(value: Any, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise _rule_error(f"{field} is not a number.", field) from exc
    if not number.is_finite() or number < 0:
        raise _rule_error(f"{field} must be zero or more.", field)
    return number


@dataclass(frozen=True)
class CheckedRule:
    """A rule's target (`channel`, `scope` and its product or listing) and its values."""

    target: dict[str, Any]
    values: dict[str, Any]


def rule_check(
    *,
    channel: Channel,
    strategy: str,
    scope: str = AllocationRule.Scope.CHANNEL,
    sku: str | None = None,
    listing_id: int | None = None,
    parameter: Any = None,
    buffer_units: Any = 0,
    buffer_percent: Any = 0,
    max_shown: int | None = None,
    zero_below: int | None = None,
) -> CheckedRule:
    """Check a rule as `rule_set` will; write nothing. Refusals: `invalid_rule`,
    `unknown_sku` (not a product of the channel's vendor), `unknown_listing` (not a listing
    of the channel), each naming its field."""
    if strategy not in AllocationRule.Strategy.values:
        raise _rule_error(f"Unknown strategy {strategy!r}.", "strategy")
    param = _decimal(parameter, "parameter")
    if strategy == AllocationRule.Strategy.PERCENTAGE and (param is None or param > 100):
        raise _rule_error("A percentage rule needs a parameter of 0 to 100.", "parameter")
    if strategy == AllocationRule.Strategy.FIXED and param is None:
        raise _rule_error("A fixed rule needs the quantity as parameter.", "parameter")
    units = _decimal(buffer_units, "buffer_units") or Decimal(0)
    percent = _decimal(buffer_percent, "buffer_percent") or Decimal(0)
    if percent > 100:
        raise _rule_error("buffer_percent must be 0 to 100.", "buffer_percent")
    if scope not in AllocationRule.Scope.values:
        raise _rule_error(f"Unknown scope {scope!r}.", "scope")
    if scope != AllocationRule.Scope.PRODUCT and sku:
        raise _rule_error("Only a product rule names a SKU.", "sku")
    if scope != AllocationRule.Scope.LISTING and listing_id:
        raise _rule_error("Only a listing rule names a listing.", "listing_id")
    target: dict[str, Any] = {"channel": channel, "scope": scope}
    if scope == AllocationRule.Scope.PRODUCT:
        if not sku:
            raise _rule_error("A product rule names its product.", "sku")
        product = Product.objects.filter(vendor_id=channel.vendor_id, sku=sku).first()
        if product is None:
            raise _rule_error(f"Unknown SKU {sku!r}.", "sku", code="unknown_sku")
        target["product"] = product
    elif scope == AllocationRule.Scope.LISTING:
        if not listing_id:
            raise _rule_error("A listing rule names its listing.", "listing_id")
        listing = ChannelListing.objects.filter(channel=channel, pk=listing_id).first()
        if listing is None:
            raise _rule_error(
                f"Unknown listing {listing_id!r}.", "listing_id", code="unknown_listing"
            )
        target["listing"] = listing
    values = {
        "strategy": strategy,
        "parameter": param,
        "buffer_units": units,
        "buffer_percent": percent,
        "max_shown": max_shown,
        "zero_below": zero_below,
    }
    return CheckedRule(target=target, values=values)


@transaction.atomic
def rule_set(*, channel: Channel, actor: str, **rule: Any) -> tuple[AllocationRule, bool]:
    """Create or replace the channel's rule for a scope; return it and whether it is new.

    Takes `rule_check`'s arguments and refuses what it refuses. The affected listings (and,
    for shared-pool strategies, the other channels' listings of the same products) are
    marked dirty.
    """
    checked = rule_check(channel=channel, **rule)
    target, scope = checked.target, checked.target["scope"]
    rule_row, created = AllocationRule.objects.select_for_update().get_or_create(
        **target,
        defaults={"strategy": checked.values["strategy"]},
    )
    for name, value in checked.values.items():
        setattr(rule_row, name, value)
    rule_row.save()
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
    return rule_row, created
