"""Stock mutations described as data, alone or in batches."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from core.errors import DomainError
from inventory.hooks import stock_changes_collected
from inventory.locks import stock_levels_lock
from inventory.models import Product, Warehouse
from inventory.services.stock import (
    Origin,
    StockMutation,
    stock_adjust,
    stock_set,
    stock_transfer,
)


@dataclass(frozen=True)
class MutationRequest:
    """One stock mutation: `kind` is adjust (delta), set (count) or transfer."""

    kind: str
    product: Product
    warehouse: Warehouse
    quantity: Decimal
    origin: Origin
    to_warehouse: Warehouse | None = None
    unit_cost: Decimal | None = None
    idempotency_key: str = ""


class BatchRejected(DomainError):
    """An atomic batch had a failing row, so no row was applied."""

    status_code = 422
    code = "batch_rejected"
    message = "At least one row failed, so no row was applied (atomic batch)."

    def __init__(self, results: list[StockMutation | DomainError]) -> None:
        super().__init__()
        self.results = results


def stock_mutate(request: MutationRequest) -> StockMutation:
    """Apply one mutation through its service (each locks, checks, and writes the ledger)."""
    common = {
        "product": request.product,
        "origin": request.origin,
        "idempotency_key": request.idempotency_key,
    }
    if request.kind == "adjust":
        return stock_adjust(
            warehouse=request.warehouse,
            delta=request.quantity,
            unit_cost=request.unit_cost,
            **common,
        )
    if request.kind == "set":
        return stock_set(
            warehouse=request.warehouse,
            quantity=request.quantity,
            unit_cost=request.unit_cost,
            **common,
        )
    if request.kind == "transfer":
        if request.to_warehouse is None:
            raise DomainError(
                "A transfer needs a destination warehouse.", code="to_warehouse_required"
            )
        return stock_transfer(
            from_warehouse=request.warehouse,
            to_warehouse=request.to_warehouse,
            quantity=request.quantity,
            **common,
        )
    raise DomainError(f"Unknown mutation type {request.kind!r}.", code="invalid_mutation_type")


def _lockable_pairs(rows: list[MutationRequest | DomainError]) -> list[tuple[Product, Warehouse]]:
    pairs = []
    for row in rows:
        if isinstance(row, DomainError):
            continue
        for warehouse in (row.warehouse, row.to_warehouse):
            if (
                warehouse is not None
                and warehouse.active
                and warehouse.vendor_id == row.product.vendor_id
            ):
                pairs.append((row.product, warehouse))
    return pairs


def stock_mutate_batch(
    *, rows: list[MutationRequest | DomainError], atomic: bool
) -> list[StockMutation | DomainError]:
    """Apply rows in order; return one result per row (a mutation, or the row's error).

    Rows given as errors (they failed validation upstream) are reported as they are. Every
    level the batch touches is locked first, in one primary-key-ordered pass, so two
    batches cannot deadlock however their rows are ordered. Each row runs in its own
    savepoint: a failing row never stops the others, unless `atomic`, in which case any
    failure rolls every row back and raises `BatchRejected` carrying the results.
    """
    results: list[StockMutation | DomainError] = []
    with transaction.atomic():
        pairs = _lockable_pairs(rows)
        if pairs:
            stock_levels_lock(pairs)
        with stock_changes_collected():
            for row in rows:
                if isinstance(row, DomainError):
                    results.append(row)
                    continue
                try:
                    with transaction.atomic():
                        results.append(stock_mutate(row))
                except DomainError as exc:
                    results.append(exc)
        if atomic and any(isinstance(result, DomainError) for result in results):
            raise BatchRejected(results)
    return results
