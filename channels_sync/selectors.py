"""Reads for the push pipeline: dirty listings, pools, rules, sales, desired quantities.

Planning is set-based: a page of listings costs a fixed handful of queries (the pools of
its products, the rules, and for shared-pool strategies the other channels' claims), then
pure allocation in Python (`channels_sync.allocation`).
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone

from channels_sync.allocation import Allocation, Claim, RuleSpec, allocate, allocate_one
from channels_sync.models import AllocationRule, Channel, ChannelListing
from inventory.models import StockLevel, StockMovement
from inventory.services.bulk import is_postgresql

GROUP_STRATEGIES = frozenset(
    {
        AllocationRule.Strategy.PRIORITY,
        AllocationRule.Strategy.EQUAL_SPLIT,
        AllocationRule.Strategy.DEMAND_WEIGHTED,
    }
)
DEFAULT_RULE = RuleSpec(scope="default")
SALES_WINDOW = timedelta(days=30)
ZERO = Decimal(0)

LISTING_FIELDS = (
    "id",
    "product_id",
    "external_item_id",
    "external_variant_id",
    "external_sku",
    "external_location_id",
    "dirty_version",
    "last_pushed_quantity",
    "last_observed_quantity",
    "channel_quantity",
    "push_failures",
    "status",
)


@dataclass(frozen=True)
class PlannedListing:
    """A listing as the push plans it: its row, and the quantity it should show."""

    row: dict
    allocation: Allocation

    @property
    def id(self) -> int:
        return self.row["id"]

    @property
    def quantity(self) -> int:
        return self.allocation.quantity


def channel_sales_source(channel_id: int) -> str:
    """The ledger `source` of stock movements caused by a channel's orders."""
    return f"channel:{channel_id}"


def listings_to_push(
    channel: Channel,
    *,
    include_clean: bool = False,
    respect_backoff: bool = True,
    after_id: int = 0,
    limit: int = 5000,
) -> list[dict]:
    """The next page of the channel's listings that need a push (dirty, not excluded).

    Listings backing off after a failure wait until their time unless `respect_backoff` is
    off; `include_clean` takes every listing (a full resync).
    """
    query = ChannelListing.objects.filter(channel_id=channel.pk, id__gt=after_id).exclude(
        status=ChannelListing.Status.EXCLUDED
    )
    if not include_clean:
        query = query.filter(dirty=True)
        if respect_backoff:
            query = query.filter(Q(next_push_at__isnull=True) | Q(next_push_at__lte=timezone.now()))
    return list(query.order_by("id").values(*LISTING_FIELDS)[:limit])


def listings_in_push_groups(
    channel: Channel, adapter, rows: Sequence[dict], *, exclude_ids: Iterable[int] = ()
) -> list[dict]:
    """The channel's other listings (dirty or not, excluded ones too: the marketplace wants
    the whole group in each update; neither `rows` nor `exclude_ids`) in the push groups of
    these listing rows (`Adapter.push_group`), with their `dirty` mark: one query, narrowed
    by the columns of the type's `push_group_keys`, then matched group by group. [] for a
    type without groups."""
    group_of = adapter.push_group

    def group(row: dict) -> str | None:
        return group_of(adapter.keys_from_listing(row))

    groups = {group(row) for row in rows} - {None}
    if not groups or not adapter.push_group_keys:
        return []
    query = ChannelListing.objects.filter(channel_id=channel.pk)
    for name in adapter.push_group_keys:
        column = adapter.key_columns[name]
        query = query.filter(**{f"{column}__in": sorted({str(row[column]) for row in rows})})
    known = {row["id"] for row in rows} | set(exclude_ids)
    return [
        row
        for row in query.order_by("id").values(*LISTING_FIELDS, "dirty")
        if row["id"] not in known and group(row) in groups
    ]


def channel_rules(channel: Channel) -> tuple[RuleSpec, dict[int, RuleSpec], dict[int, RuleSpec]]:
    """The channel's default rule, and its rules by product id and by listing id."""
    return _rules_sorted(AllocationRule.objects.filter(channel_id=channel.pk))


def _rules_sorted(
    rules: Iterable[AllocationRule],
) -> tuple[RuleSpec, dict[int, RuleSpec], dict[int, RuleSpec]]:
    default = DEFAULT_RULE
    by_product: dict[int, RuleSpec] = {}
    by_listing: dict[int, RuleSpec] = {}
    for rule in rules:
        spec = rule_spec(rule)
        if rule.scope == AllocationRule.Scope.CHANNEL:
            default = spec
        elif rule.scope == AllocationRule.Scope.PRODUCT:
            by_product[rule.product_id] = spec
        else:
            by_listing[rule.listing_id] = spec
    return default, by_product, by_listing


def rule_for(
    listing_id: int,
    product_id: int,
    rules: tuple[RuleSpec, dict[int, RuleSpec], dict[int, RuleSpec]],
) -> RuleSpec:
    """The rule that applies to a listing: its own, else its product's, else the default."""
    default, by_product, by_listing = rules
    return by_listing.get(listing_id) or by_product.get(product_id) or default


def listing_rule(listing: ChannelListing) -> RuleSpec:
    """The allocation rule that applies to one listing (see `rule_for`); one query."""
    rules = AllocationRule.objects.filter(channel_id=listing.channel_id).filter(
        Q(scope=AllocationRule.Scope.CHANNEL)
        | Q(scope=AllocationRule.Scope.PRODUCT, product_id=listing.product_id)
        | Q(scope=AllocationRule.Scope.LISTING, listing_id=listing.pk)
    )
    return rule_for(listing.pk, listing.product_id, _rules_sorted(rules))


def rule_spec(rule: AllocationRule) -> RuleSpec:
    return RuleSpec(
        strategy=rule.strategy,
        parameter=rule.parameter,
        buffer_units=rule.buffer_units,
        buffer_percent=rule.buffer_percent,
        max_shown=rule.max_shown,
        zero_below=rule.zero_below,
        scope=rule.scope,
    )


def channel_warehouse_ids(channel_ids: Iterable[int]) -> dict[int, list[int]]:
    """Each channel's warehouses (active ones only: an inactive warehouse sells nothing)."""
    through = Channel.warehouses.through
    result: dict[int, list[int]] = defaultdict(list)
    rows = through.objects.filter(channel_id__in=list(channel_ids), warehouse__active=True)
    for channel_id, warehouse_id in rows.values_list("channel_id", "warehouse_id"):
        result[channel_id].append(warehouse_id)
    return result


def pools(product_ids: Sequence[int], warehouse_ids: Sequence[int]) -> dict[int, Decimal]:
    """Available stock (on hand - reserved) per product over the given warehouses."""
    if not product_ids or not warehouse_ids:
        return {}
    level_table = StockLevel._meta.db_table
    with connection.cursor() as cursor:
        if is_postgresql():
            cursor.execute(
                # A join with the id list, not `= ANY(list)`: the latter checks every row
                # against the whole list (quadratic on big pages).
                f"SELECT s.product_id, SUM(s.on_hand - s.reserved) FROM {level_table} s "
                f"JOIN unnest(%s::bigint[]) AS p (id) ON s.product_id = p.id "
                f"WHERE s.warehouse_id = ANY(%s) GROUP BY s.product_id",
                [list(product_ids), list(warehouse_ids)],
            )
        else:
            products = ", ".join("%s" for _ in product_ids)
            warehouses = ", ".join("%s" for _ in warehouse_ids)
            cursor.execute(
                f"SELECT product_id, SUM(on_hand - reserved) FROM {level_table} "
                f"WHERE product_id IN ({products}) AND warehouse_id IN ({warehouses}) "
                f"GROUP BY product_id",
                [*product_ids, *warehouse_ids],
            )
        return {row[0]: Decimal(row[1]) for row in cursor.fetchall()}


def sales_last_30_days(
    product_ids: Sequence[int], channel_ids: Sequence[int]
) -> dict[tuple[int, int], Decimal]:
    """Committed (shipped) quantities per (channel, product) over the last 30 days.

    Read from the ledger: `commit` movements whose source is the channel
    (`channel:<id>`, see `channel_sales_source`).
    """
    if not product_ids or not channel_ids:
        return {}
    sources = {channel_sales_source(cid): cid for cid in channel_ids}
    rows = (
        StockMovement.objects.filter(
            kind=StockMovement.Kind.COMMIT,
            source__in=list(sources),
            level__product_id__in=list(product_ids),
            created_at__gte=timezone.now() - SALES_WINDOW,
        )
        .values("source", "level__product_id")
        .order_by()
        .annotate(total=Sum("on_hand_delta"))
    )
    # Commits take stock out: their deltas are negative.
    return {
        (sources[row["source"]], row["level__product_id"]): -(row["total"] or ZERO) for row in rows
    }


def plan(channel: Channel, rows: list[dict]) -> list[PlannedListing]:
    """The desired quantity of each listing row (one page of one channel)."""
    if not rows:
        return []
    rules = channel_rules(channel)
    warehouses = channel_warehouse_ids([channel.pk]).get(channel.pk, [])
    product_ids = sorted({row["product_id"] for row in rows})
    own_pools = pools(product_ids, warehouses)
    planned: list[PlannedListing] = []
    grouped: list[tuple[dict, RuleSpec]] = []
    priority = channel.priority
    for row in rows:
        rule = rule_for(row["id"], row["product_id"], rules)
        if rule.strategy in GROUP_STRATEGIES:
            grouped.append((row, rule))
            continue
        claim = Claim(
            listing_id=row["id"],
            channel_id=channel.pk,
            priority=priority,
            pool=own_pools.get(row["product_id"], ZERO),
            rule=rule,
        )
        planned.append(PlannedListing(row, allocate_one(claim)))
    if grouped:
        planned.extend(_plan_grouped(channel, grouped))
    planned.sort(key=lambda item: item.id)
    return [_capped(item) for item in planned]


# Listing quantities are stored as 32-bit integers; no marketplace takes more.
MAX_CHANNEL_QUANTITY = 2_147_483_647


def _capped(item: PlannedListing) -> PlannedListing:
    if item.allocation.quantity <= MAX_CHANNEL_QUANTITY:
        return item
    reason = f"{item.allocation.reason}; capped at {MAX_CHANNEL_QUANTITY:,}"[:200]
    return PlannedListing(item.row, Allocation(MAX_CHANNEL_QUANTITY, reason))


def _plan_grouped(channel: Channel, grouped: list[tuple[dict, RuleSpec]]) -> list[PlannedListing]:
    """Allocate listings whose rule shares the pool with the other channels of the product."""
    product_ids = sorted({row["product_id"] for row, _ in grouped})
    claims_by_product, shared = product_claims(channel.vendor_id, product_ids)
    result = []
    for row, _rule in grouped:
        claims = claims_by_product.get(row["product_id"], [])
        allocations = allocate(claims, shared.get(row["product_id"], ZERO))
        allocation = allocations.get(row["id"])
        if allocation is None:  # the listing's channel became inactive meanwhile
            allocation = Allocation(0, "channel inactive")
        result.append(PlannedListing(row, allocation))
    return result


def product_claims(
    vendor_id, product_ids: Sequence[int]
) -> tuple[dict[int, list[Claim]], dict[int, Decimal]]:
    """Every active channel's claim on each product, and each product's shared pool.

    The shared pool of a product is its available stock over the union of the warehouses
    of the channels whose rule for it shares the pool (priority, equal split, demand
    weighted).
    """
    listings = list(
        ChannelListing.objects.filter(
            product_id__in=list(product_ids),
            channel__vendor_id=vendor_id,
            channel__active=True,
        )
        .exclude(status=ChannelListing.Status.EXCLUDED)
        .values("id", "product_id", "channel_id", "channel__priority")
    )
    channel_ids = sorted({row["channel_id"] for row in listings})
    warehouses = channel_warehouse_ids(channel_ids)
    rules = {}
    for channel_id in channel_ids:
        rules[channel_id] = channel_rules(Channel(pk=channel_id))
    all_warehouses = sorted({wid for ids in warehouses.values() for wid in ids})
    per_warehouse = _pools_by_warehouse(product_ids, all_warehouses)
    sales = sales_last_30_days(product_ids, channel_ids)
    claims: dict[int, list[Claim]] = defaultdict(list)
    group_warehouses: dict[int, set[int]] = defaultdict(set)
    for row in listings:
        channel_id, product_id = row["channel_id"], row["product_id"]
        default, by_product, by_listing = rules[channel_id]
        rule = by_listing.get(row["id"]) or by_product.get(product_id) or default
        own = warehouses.get(channel_id, [])
        pool = sum((per_warehouse.get((product_id, wid), ZERO) for wid in own), ZERO)
        if rule.strategy in GROUP_STRATEGIES:
            group_warehouses[product_id].update(own)
        claims[product_id].append(
            Claim(
                listing_id=row["id"],
                channel_id=channel_id,
                priority=row["channel__priority"],
                pool=pool,
                rule=rule,
                sales=sales.get((channel_id, product_id), ZERO),
            )
        )
    shared = {
        product_id: sum(
            (per_warehouse.get((product_id, wid), ZERO) for wid in group_warehouses[product_id]),
            ZERO,
        )
        for product_id in claims
    }
    return claims, shared


def _pools_by_warehouse(
    product_ids: Sequence[int], warehouse_ids: Sequence[int]
) -> dict[tuple[int, int], Decimal]:
    if not product_ids or not warehouse_ids:
        return {}
    rows = StockLevel.objects.filter(
        product_id__in=list(product_ids), warehouse_id__in=list(warehouse_ids)
    ).values_list("product_id", "warehouse_id", "on_hand", "reserved")
    return {(pid, wid): on_hand - reserved for pid, wid, on_hand, reserved in rows}


def channel_preview(channel: Channel, *, limit: int = 1000, after_id: int = 0) -> list[dict]:
    """The dry-run table: every listing's pool, current (last pushed) and desired quantity."""
    rows = list(
        ChannelListing.objects.filter(channel_id=channel.pk, id__gt=after_id)
        .order_by("id")
        .values(*LISTING_FIELDS, "product__sku")[:limit]
    )
    warehouses = channel_warehouse_ids([channel.pk]).get(channel.pk, [])
    own_pools = pools(sorted({row["product_id"] for row in rows}), warehouses)
    planned = {
        item.id: item.allocation
        for item in plan(channel, [row for row in rows if row["status"] != "excluded"])
    }
    table = []
    for row in rows:
        allocation = planned.get(row["id"])
        desired = allocation.quantity if allocation is not None else None
        table.append(
            {
                "listing_id": row["id"],
                "sku": row["product__sku"],
                "pool": own_pools.get(row["product_id"], ZERO),
                "current": row["last_pushed_quantity"],
                "desired": desired,
                "change": allocation is not None and row["last_pushed_quantity"] != desired,
                "reason": allocation.reason if allocation is not None else "excluded: not pushed",
            }
        )
    return table


def channels_with_due_listings() -> list[int]:
    """Channels that can push and hold dirty listings due now (for the minute sweep)."""
    now = timezone.now()
    return list(
        ChannelListing.objects.filter(
            dirty=True,
            channel__active=True,
            channel__push_enabled=True,
            channel__needs_reauth=False,
        )
        .exclude(status=ChannelListing.Status.EXCLUDED)
        .filter(Q(next_push_at__isnull=True) | Q(next_push_at__lte=now))
        .values_list("channel_id", flat=True)
        .distinct()
        .order_by("channel_id")
    )


def channel_webhook_url(channel: Channel) -> str:
    """The URL to register with the marketplace for this channel's webhooks.

    `PUBLIC_BASE_URL` plus the inbound endpoint's path. Shopee signs exactly this URL, so the
    signature check uses it too (never the address a request happened to arrive on, which a
    proxy may have rewritten).
    """
    from django.conf import settings
    from django.urls import reverse

    path = reverse(
        "webhooks:receive", kwargs={"channel_type": channel.type, "channel_id": channel.pk}
    )
    return f"{settings.PUBLIC_BASE_URL}{path}"
