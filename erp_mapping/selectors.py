"""ERP reads: code mappings (with an in-process cache), agents, connections, runs."""

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, OuterRef, QuerySet

from channels_sync.models import Conflict
from core.secrets import unmark_secret
from erp_mapping.models import (
    ErpAgent,
    ErpCodeMapping,
    ErpConnection,
    ErpSyncJob,
    ReconciliationEvent,
    SyncRun,
)
from inventory.models import Vendor
from orders.models import Order, OrderLine

MAPPING_CACHE_SIZE = 10_000
MAPPING_CACHE_TTL_SECONDS = 300.0

_MISSING = object()


class _LruCache:
    """A small thread-safe LRU with a time-to-live per entry (per process)."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every clear: a value read from the database before a clear is not
        # stored after it (it may predate the change that caused the clear).
        self.generation = 0

    def get(self, key):
        with self._lock:
            entry = self._data.get(key, _MISSING)
            if entry is _MISSING:
                return _MISSING
            value, expires = entry
            if expires < time.monotonic():
                del self._data[key]
                return _MISSING
            self._data.move_to_end(key)
            return value

    def put(self, key, value, *, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self.generation:
                return
            self._data[key] = (value, time.monotonic() + self.ttl)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.generation += 1

    def __len__(self) -> int:
        return len(self._data)


_mapping_cache = _LruCache(MAPPING_CACHE_SIZE, MAPPING_CACHE_TTL_SECONDS)


def mapping_cache_clear() -> None:
    """Forget every cached resolution (called on commit of any mapping change)."""
    _mapping_cache.clear()


def mapping_resolve(vendor_id: uuid.UUID | str, mapping_type: str, erp_code: str) -> str | None:
    """The internal code an active mapping gives this ERP code, or None when unmapped.

    Cached per process (LRU of 10,000 entries, 5 minutes); misses are cached too. An empty
    `erp_code` resolves to the vendor's fallback (the mapping with an empty ERP code).
    """
    key = (str(vendor_id), mapping_type, erp_code)
    cached = _mapping_cache.get(key)
    if cached is not _MISSING:
        return cached
    generation = _mapping_cache.generation
    resto_code = (
        ErpCodeMapping.objects.filter(
            vendor_id=vendor_id, mapping_type=mapping_type, erp_code=erp_code, is_active=True
        )
        .values_list("resto_code", flat=True)
        .first()
    )
    _mapping_cache.put(key, resto_code, generation=generation)
    return resto_code


def mapping_resolve_many(
    vendor_id: uuid.UUID | str, mapping_type: str, erp_codes: Iterable[str]
) -> dict[str, str]:
    """Resolve many ERP codes at once: {erp_code: resto_code} for the mapped ones.

    Codes not in the cache are read in one query, and the answers (misses included) are
    cached like `mapping_resolve`'s.
    """
    found: dict[str, str] = {}
    wanted: set[str] = set()
    for code in set(erp_codes):
        cached = _mapping_cache.get((str(vendor_id), mapping_type, code))
        if cached is _MISSING:
            wanted.add(code)
        elif cached is not None:
            found[code] = cached
    if wanted:
        generation = _mapping_cache.generation
        rows = dict(
            ErpCodeMapping.objects.filter(
                vendor_id=vendor_id, mapping_type=mapping_type, erp_code__in=wanted, is_active=True
            ).values_list("erp_code", "resto_code")
        )
        for code in wanted:
            _mapping_cache.put(
                (str(vendor_id), mapping_type, code), rows.get(code), generation=generation
            )
        found.update(rows)
    return found


@dataclass(frozen=True)
class ErpSource:
    """Where and how the nightly pull reaches a vendor's ERP."""

    base_url: str
    token: str = field(repr=False)


def erp_source_for(vendor: Vendor) -> ErpSource | None:
    """The vendor's ERP connection, or None when it has none or it is disabled.

    The default vendor without a connection row falls back to `ERP_BASE_URL` and
    `ERP_API_TOKEN` from the environment.
    """
    connection = ErpConnection.objects.filter(vendor=vendor).first()
    if connection is not None:
        if not connection.enabled:
            return None
        return ErpSource(connection.base_url, unmark_secret(connection.token))
    if vendor.is_default and settings.ERP_BASE_URL:
        return ErpSource(settings.ERP_BASE_URL, unmark_secret(settings.ERP_API_TOKEN))
    return None


def vendor_erp_stock_source(vendor_id) -> str:
    """Through what the vendor's physical stock comes from its ERP ("an ERP agent"), or "".

    Registered as an `inventory.hooks` stock source reader. An ERP agent pushes the vendor's
    stock and the hourly reconciliation corrects ours back to the ERP's; an enabled
    connection (or, for the default vendor without a connection row, `ERP_BASE_URL`) has
    the nightly pull overwrite it. Either way the ERP wins.
    """
    if ErpAgent.objects.filter(vendor_id=vendor_id).exists():
        return "an ERP agent"
    enabled = (
        ErpConnection.objects.filter(vendor_id=vendor_id).values_list("enabled", flat=True).first()
    )
    if enabled:
        return "an enabled ERP connection"
    if (
        enabled is None
        and settings.ERP_BASE_URL
        and Vendor.objects.filter(pk=vendor_id, is_default=True).exists()
    ):
        return "the ERP named by ERP_BASE_URL"
    return ""


def vendors_to_pull() -> list[Vendor]:
    """Vendors with an enabled ERP connection (and the default one when the environment
    names an ERP)."""
    vendors = list(Vendor.objects.filter(erp_connection__enabled=True).order_by("name"))
    if settings.ERP_BASE_URL:
        default = Vendor.objects.filter(is_default=True, erp_connection__isnull=True).first()
        if default is not None:
            vendors.insert(0, default)
    return vendors


def sync_runs_list() -> QuerySet[SyncRun]:
    return SyncRun.objects.select_related("vendor").order_by("-started_at", "-id")


def vendors_to_reconcile() -> list[Vendor]:
    """Vendors whose ERP agent is online (the hourly reconciliation's)."""
    return list(
        Vendor.objects.filter(erp_agent__status=ErpAgent.Status.ONLINE).order_by("name", "pk")
    )


def reconciliation_events_list() -> QuerySet[ReconciliationEvent]:
    return ReconciliationEvent.objects.select_related("vendor").order_by("-started_at", "-id")


# --- order -> ERP sync ------------------------------------------------------------------------


def agent_vendor_ids() -> list:
    """The vendors that have an agent (each has a circuit breaker)."""
    return list(ErpAgent.objects.order_by("vendor_id").values_list("vendor_id", flat=True))


def breakers_readiness() -> dict[str, dict]:
    """Each agent's circuit, by vendor id (readiness details; one Redis round trip, cached
    for a couple of seconds)."""
    from erp_mapping.clients.breaker import breaker_states

    return {state.vendor_id: state.as_dict() for state in breaker_states(agent_vendor_ids())}


def agents_without_outbound_secret() -> list[str]:
    """Vendors whose agent has no outbound secret (registered before there were any): their
    orders wait until the agent is registered again."""
    agents = ErpAgent.objects.order_by("vendor_id").only("vendor_id", "outbound_secret")
    return [str(agent.vendor_id) for agent in agents if not agent.outbound_secret]


def agents_unsigned_readiness() -> dict:
    """Readiness detail: the agents SyncStore cannot sign calls to (register them again)."""
    vendors = agents_without_outbound_secret()
    return {"status": "action_needed" if vendors else "ok", "vendors": vendors}


def order_duplicate_open(order: Order) -> bool:
    """Whether the order is named in an open `duplicate_order` conflict (its ERP create
    waits until staff settle it)."""
    if not order.external_id:
        return False
    return Conflict.objects.filter(
        kind=Conflict.Kind.DUPLICATE_ORDER,
        status=Conflict.Status.OPEN,
        vendor_id=order.vendor_id,
        reference=order.external_id,
    ).exists()


def duplicate_orders_open() -> QuerySet[Conflict]:
    """Open `duplicate_order` conflicts about a sync job's order (for `Exists` on jobs)."""
    return Conflict.objects.filter(
        kind=Conflict.Kind.DUPLICATE_ORDER,
        status=Conflict.Status.OPEN,
        vendor_id=OuterRef("order__vendor_id"),
        reference=OuterRef("order__external_id"),
    ).exclude(reference="")


def breakers_metric() -> list[tuple[tuple[str], float]]:
    """Each agent's circuit as a number (0 closed, 1 half-open, 2 open), by vendor id."""
    from erp_mapping.clients.breaker import STATE_VALUES, breaker_states

    return [
        ((state.vendor_id,), float(STATE_VALUES.get(state.state, 0)))
        for state in breaker_states(agent_vendor_ids())
    ]


def sync_jobs_by_status() -> list[tuple[tuple[str], float]]:
    """How many ERP sync jobs are in each status (every status, zeros included)."""
    counts = dict(ErpSyncJob.objects.order_by().values_list("status").annotate(n=Count("pk")))
    return [((status,), float(counts.get(status, 0))) for status in ErpSyncJob.Status.values]


def sync_jobs_list() -> QuerySet[ErpSyncJob]:
    """ERP sync jobs for the API (newest first)."""
    return ErpSyncJob.objects.select_related("order").order_by("-created_at", "-pk")


@dataclass
class AwaitingErp:
    """What `levels_awaiting_erp` found: the levels to spare, and the orders not spared."""

    levels: set[tuple[int, int]] = field(default_factory=set)
    # Shipped orders not in the ERP and not on their way there (no create job, or a dead
    # one): {"order_id", "order_number", "job": "none" | "dead"}, one per order.
    unsent: list[dict] = field(default_factory=list)


# A create job in these states still brings its order to the ERP (failed: a retry is due).
_JOB_ON_ITS_WAY = (
    ErpSyncJob.Status.PENDING,
    ErpSyncJob.Status.PROCESSING,
    ErpSyncJob.Status.AWAITING_CALLBACK,
    ErpSyncJob.Status.FAILED,
    # Dead: waiting for staff to retry it from the console (its dead letter is open). Setting
    # its levels to the ERP's count meanwhile would put the shipped units back on sale.
    ErpSyncJob.Status.DEAD,
)


def levels_awaiting_erp(pairs: set[tuple[int, int]]) -> AwaitingErp:
    """Of these (product, warehouse) levels, those holding shipped order lines of orders on
    their way to the ERP (their stock left here; the ERP still counts it).

    An order is on its way while its `order.create` job exists and is pending, processing,
    awaiting the agent's callback or failed (a retry is due), or dead (its dead letter waits
    for staff; it is also listed in `unsent`). A shipped order not in the ERP with no job at
    all (shipped before the ERP sync existed, or its hook failed long ago) will not get there:
    its levels are not spared (the ERP's count wins) and it is listed in `unsent`. Two
    queries.
    """
    found = AwaitingErp()
    if not pairs:
        return found
    rows = (
        OrderLine.objects.filter(
            status=OrderLine.Status.COMMITTED,
            order__erp_synced_at__isnull=True,
            product_id__in={p for p, _ in pairs},
            warehouse_id__in={w for _, w in pairs},
        )
        .order_by()
        .values_list("order_id", "order__order_number", "product_id", "warehouse_id")
        .distinct()
    )
    by_order: dict[int, tuple[str, set[tuple[int, int]]]] = {}
    for order_id, number, product_id, warehouse_id in rows:
        if (product_id, warehouse_id) in pairs:
            by_order.setdefault(order_id, (number, set()))[1].add((product_id, warehouse_id))
    if not by_order:
        return found
    jobs = dict(
        ErpSyncJob.objects.filter(
            order_id__in=list(by_order), operation=ErpSyncJob.Operation.ORDER_CREATE
        ).values_list("order_id", "status")
    )
    for order_id in sorted(by_order):
        number, levels = by_order[order_id]
        status = jobs.get(order_id)
        if status in _JOB_ON_ITS_WAY:
            found.levels |= levels
        if status is None or status == ErpSyncJob.Status.DEAD:
            job = "none" if status is None else status
            found.unsent.append({"order_id": order_id, "order_number": number, "job": job})
    return found
