"""ERP code mapping writes: the seed (a set-based upsert), single edits, activation.

Every write clears the resolver cache (`erp_mapping.selectors.mapping_cache_clear`) when its
transaction commits. That cache lives in each process: this clears the process that made
the change; other web and worker processes keep their cached answers (misses included) until
the 5-minute TTL expires them, which bounds how stale a resolution can be.

Mappings have no audit table; each write logs its event with the actor and what changed.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ConflictError, DomainError
from erp_mapping.models import ErpCodeMapping
from erp_mapping.selectors import mapping_cache_clear
from inventory.locks import vendors_lock
from inventory.models import Vendor

logger = structlog.get_logger(__name__)

MAPPING_TYPES: tuple[str, ...] = tuple(ErpCodeMapping.Type.values)
_WRITTEN_FIELDS = ["resto_code", "resto_label", "is_active", "updated_at"]


@dataclass(frozen=True)
class MappingInput:
    """One seed row that passed the edge's shape checks; `index` is its position in the input.

    `is_active=None` means "not given": a new mapping is active, an existing one keeps its state.
    """

    index: int
    vendor_id: uuid.UUID
    mapping_type: str
    erp_code: str
    resto_code: str
    resto_label: str
    is_active: bool | None = None


@dataclass(frozen=True)
class RowError:
    """Why the row at `index` was not imported: the field at fault, a stable code, a message.

    `mapping_type` is the row's type when it is a known one (for the per-type counts).
    """

    index: int
    field: str
    code: str
    message: str
    mapping_type: str = ""

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }


@dataclass
class SeedCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    invalid: int = 0

    @property
    def mappings(self) -> int:
        """The mappings the seed holds after the run: created, updated or unchanged."""
        return self.created + self.updated + self.unchanged

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SeedVendor:
    id: uuid.UUID
    name: str
    created: bool


@dataclass
class SeedResult:
    """What a seed did (or, in a dry run, would do): counts per type, totals, vendors, errors.

    Invalid rows whose type is unknown count in `totals` only.
    """

    dry_run: bool
    by_type: dict[str, SeedCounts] = field(
        default_factory=lambda: {name: SeedCounts() for name in MAPPING_TYPES}
    )
    totals: SeedCounts = field(default_factory=SeedCounts)
    vendors: list[SeedVendor] = field(default_factory=list)
    invalid: list[RowError] = field(default_factory=list)

    def count(self, outcome: str, mapping_type: str, number: int = 1) -> None:
        if mapping_type in self.by_type:
            bucket = self.by_type[mapping_type]
            setattr(bucket, outcome, getattr(bucket, outcome) + number)
        setattr(self.totals, outcome, getattr(self.totals, outcome) + number)


def vendor_seed_name(vendor_id: uuid.UUID) -> str:
    """The name given to a vendor that a seed creates ("Vendor 971a1d7b")."""
    return f"Vendor {vendor_id.hex[:8]}"


def _rule_errors(row: MappingInput) -> RowError | None:
    if row.mapping_type not in MAPPING_TYPES:
        return RowError(
            row.index, "mapping_type", "unknown_type", f"Unknown mapping type {row.mapping_type!r}."
        )
    if not row.erp_code and row.mapping_type != ErpCodeMapping.Type.UNIT:
        return RowError(
            row.index,
            "erp_code",
            "missing_code",
            "Only a unit mapping may have an empty ERP code (the vendor's fallback unit).",
            row.mapping_type,
        )
    return None


def _last_wins(rows: Sequence[MappingInput], result: SeedResult) -> list[MappingInput]:
    """Keep the last row of each (vendor, type, ERP code); report the earlier ones."""
    last: dict[tuple, MappingInput] = {}
    for row in sorted(rows, key=lambda r: r.index):
        key = (row.vendor_id, row.mapping_type, row.erp_code)
        earlier = last.get(key)
        if earlier is not None:
            result.invalid.append(
                RowError(
                    earlier.index,
                    "erp_code",
                    "duplicate",
                    f"Row {row.index} maps the same {row.mapping_type} code "
                    f"{row.erp_code!r}; the last row wins.",
                    row.mapping_type,
                )
            )
            result.count("invalid", row.mapping_type)
        last[key] = row
    return sorted(last.values(), key=lambda r: r.index)


def _vendors_prepare(vendor_ids: set[uuid.UUID], *, dry_run: bool, result: SeedResult) -> None:
    existing = dict(Vendor.objects.filter(pk__in=vendor_ids).values_list("pk", "name"))
    missing = sorted(vendor_ids - set(existing))
    if missing and not dry_run:
        # ignore_conflicts: a concurrent seed may create the same vendor first.
        Vendor.objects.bulk_create(
            [Vendor(pk=pk, name=vendor_seed_name(pk)) for pk in missing], ignore_conflicts=True
        )
    if not dry_run:
        # Seeds of one vendor run one at a time: without this lock, two seeds could both see
        # a code as new and the second insert would fail on the unique constraint.
        vendors_lock(vendor_ids)
    for pk in sorted(vendor_ids):
        name = existing.get(pk) or vendor_seed_name(pk)
        result.vendors.append(SeedVendor(id=pk, name=name, created=pk not in existing))


def mappings_seed(
    *,
    rows: Sequence[MappingInput],
    invalid: Sequence[RowError] = (),
    include_empty: bool = False,
    dry_run: bool = False,
    actor: str,
) -> SeedResult:
    """Upsert mappings from a seed (a legacy export or an API body), set-based.

    `rows` passed the edge's shape checks; `invalid` are the rows that did not (reported and
    counted with the others). Here a non-unit row with an empty ERP code is invalid
    (`missing_code`), and of rows with the same (vendor, type, ERP code) the last wins, the
    earlier ones are invalid (`duplicate`). A unit row with an empty ERP code (the vendor's
    fallback unit) is skipped unless `include_empty`. A vendor id not in the database is
    created. Then, in one transaction, each vendor is locked (seeds of a vendor run one at a
    time), its mappings are read once, and new ones are inserted and changed ones updated in
    bulk (code, label, active flag; a row without `is_active` keeps the stored flag).
    Idempotent: a second run of the same rows changes nothing and counts them `unchanged`.
    `dry_run` computes the same counts and writes nothing (vendors included). The resolver
    cache of this process is cleared on commit when anything changed; other processes see
    the change within the cache's 5-minute TTL.
    """
    result = SeedResult(dry_run=dry_run)
    for error in invalid:
        result.invalid.append(error)
        result.count("invalid", error.mapping_type)
    valid: list[MappingInput] = []
    for row in rows:
        error = _rule_errors(row)
        if error is None:
            valid.append(row)
        else:
            result.invalid.append(error)
            result.count("invalid", error.mapping_type)
    wanted: list[MappingInput] = []
    for row in _last_wins(valid, result):
        if not row.erp_code and not include_empty:
            result.count("skipped", row.mapping_type)
        else:
            wanted.append(row)
    result.invalid.sort(key=lambda error: error.index)

    with transaction.atomic():
        vendor_ids = {row.vendor_id for row in wanted}
        _vendors_prepare(vendor_ids, dry_run=dry_run, result=result)
        stored = {
            (mapping.vendor_id, mapping.mapping_type, mapping.erp_code): mapping
            for mapping in ErpCodeMapping.objects.filter(vendor_id__in=vendor_ids)
        }
        now = timezone.now()
        to_create: list[ErpCodeMapping] = []
        to_update: list[ErpCodeMapping] = []
        for row in wanted:
            mapping = stored.get((row.vendor_id, row.mapping_type, row.erp_code))
            if mapping is None:
                to_create.append(
                    ErpCodeMapping(
                        vendor_id=row.vendor_id,
                        mapping_type=row.mapping_type,
                        erp_code=row.erp_code,
                        resto_code=row.resto_code,
                        resto_label=row.resto_label,
                        is_active=True if row.is_active is None else row.is_active,
                    )
                )
                result.count("created", row.mapping_type)
                continue
            is_active = mapping.is_active if row.is_active is None else row.is_active
            if (mapping.resto_code, mapping.resto_label, mapping.is_active) == (
                row.resto_code,
                row.resto_label,
                is_active,
            ):
                result.count("unchanged", row.mapping_type)
                continue
            mapping.resto_code, mapping.resto_label = row.resto_code, row.resto_label
            mapping.is_active, mapping.updated_at = is_active, now
            to_update.append(mapping)
            result.count("updated", row.mapping_type)
        if not dry_run:
            ErpCodeMapping.objects.bulk_create(to_create, batch_size=1000)
            # bulk_update skips auto_now: updated_at is set above and written explicitly.
            ErpCodeMapping.objects.bulk_update(to_update, _WRITTEN_FIELDS, batch_size=1000)
            if to_create or to_update:
                transaction.on_commit(mapping_cache_clear)
    logger.info(
        "erp_mappings.seeded",
        actor=actor,
        dry_run=dry_run,
        vendors=[str(vendor.id) for vendor in result.vendors],
        vendors_created=[str(vendor.id) for vendor in result.vendors if vendor.created],
        **result.totals.as_dict(),
        by_type={name: counts.as_dict() for name, counts in result.by_type.items()},
    )
    return result


def mapping_check(*, mapping_type: str, erp_code: str) -> None:
    """Refuse a mapping the rules forbid (`unknown_type`, `missing_code`), naming its field.

    The seed applies the same rules row by row; `mapping_create` and the admin form call this.
    """
    error = _rule_errors(MappingInput(0, None, mapping_type, erp_code, "", "", True))
    if error is not None:
        raise DomainError(error.message, code=error.code, details={"field": error.field})


def mapping_create(
    *,
    vendor: Vendor,
    mapping_type: str,
    erp_code: str,
    resto_code: str,
    resto_label: str,
    is_active: bool = True,
    actor: str,
) -> ErpCodeMapping:
    """Create one mapping; refuses a code the vendor already maps for this type.

    Raises `unknown_type`, `missing_code` (an empty ERP code is only for the fallback unit)
    or 409 `mapping_exists`. Clears this process's resolver cache on commit (a miss for this
    code may be cached).
    """
    mapping_check(mapping_type=mapping_type, erp_code=erp_code)
    try:
        with transaction.atomic():
            mapping = ErpCodeMapping.objects.create(
                vendor=vendor,
                mapping_type=mapping_type,
                erp_code=erp_code,
                resto_code=resto_code,
                resto_label=resto_label,
                is_active=is_active,
            )
    except IntegrityError as exc:
        raise ConflictError(
            f"The vendor already maps {mapping_type} code {erp_code!r}.",
            code="mapping_exists",
            details={"field": "erp_code"},
        ) from exc
    transaction.on_commit(mapping_cache_clear)
    logger.info(
        "erp_mapping.created",
        actor=actor,
        mapping_id=mapping.pk,
        vendor_id=str(vendor.pk),
        mapping_type=mapping_type,
        erp_code=erp_code,
        resto_code=resto_code,
    )
    return mapping


def mapping_update(
    *, mapping: ErpCodeMapping, resto_code: str, resto_label: str, is_active: bool, actor: str
) -> ErpCodeMapping:
    """Change what a mapping stands for (internal code, label) or its active flag.

    Locks the row and compares with the stored values, so the caller's instance may already
    hold the new ones; writes (and clears this process's resolver cache on commit) only when
    something differs. The vendor, type and ERP code never change. Returns the stored row.
    """
    with transaction.atomic():
        stored = ErpCodeMapping.objects.select_for_update().get(pk=mapping.pk)
        before = {
            "resto_code": stored.resto_code,
            "resto_label": stored.resto_label,
            "is_active": stored.is_active,
        }
        after = {"resto_code": resto_code, "resto_label": resto_label, "is_active": is_active}
        changed = sorted(name for name in after if after[name] != before[name])
        if not changed:
            return stored
        for name in changed:
            setattr(stored, name, after[name])
        stored.save(update_fields=[*changed, "updated_at"])
        transaction.on_commit(mapping_cache_clear)
    logger.info(
        "erp_mapping.updated",
        actor=actor,
        mapping_id=stored.pk,
        changes={name: [before[name], after[name]] for name in changed},
    )
    return stored


def mappings_set_active(*, ids: Iterable[int], active: bool, actor: str) -> int:
    """Activate or deactivate mappings by id; return how many changed.

    Idempotent: mappings already in the wanted state are left alone (and not counted).
    Locks the changing rows in primary-key order. Clears this process's resolver cache on
    commit when any changed; other processes follow within the cache's 5-minute TTL.
    """
    with transaction.atomic():
        changing = list(
            ErpCodeMapping.objects.select_for_update()
            .filter(pk__in=list(ids))
            .exclude(is_active=active)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not changing:
            return 0
        ErpCodeMapping.objects.filter(pk__in=changing).update(
            is_active=active, updated_at=timezone.now()
        )
        transaction.on_commit(mapping_cache_clear)
    logger.info(
        "erp_mappings.activated" if active else "erp_mappings.deactivated",
        actor=actor,
        mapping_ids=changing,
        count=len(changing),
    )
    return len(changing)
