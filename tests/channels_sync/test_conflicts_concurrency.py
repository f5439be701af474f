"""Conflicts under concurrency, against real PostgreSQL (threads, each with its own connection)."""

from decimal import Decimal

import pytest

from channels_sync.errors import ConflictNotOpen, ConflictStale
from channels_sync.models import Conflict, ConflictEvent
from channels_sync.services.conflict_resolution import conflict_resolve
from channels_sync.services.conflicts import conflict_open
from inventory.models import StockLevel, StockMovement
from inventory.services import stock_adjust
from tests.channels_sync.conflict_fixtures import ORIGIN
from tests.inventory.test_concurrency import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def test_conflict_open_eight_detectors_at_once_make_one_conflict(make_shop):
    shop = make_shop(10)
    shop.edit_behind_our_back(7)

    results = run_concurrently(
        8,
        lambda i: conflict_open(
            kind=Conflict.Kind.STOCK_MISMATCH,
            vendor=shop.channel.vendor,
            channel=shop.channel,
            listing=shop.listing,
            source=Conflict.Source.RECONCILIATION if i % 2 else Conflict.Source.WEBHOOK,
            ours=10,
            theirs=7,
        ),
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    assert Conflict.objects.count() == 1
    assert sum(1 for _, created in results if created) == 1
    assert ConflictEvent.objects.filter(action="opened").count() == 1
    assert ConflictEvent.objects.filter(action="updated").count() == 0


def test_conflict_resolve_two_people_at_once_one_wins(make_shop):
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    results = run_concurrently(
        2,
        lambda i: conflict_resolve(
            conflict_id=conflict.pk,
            strategy="use_theirs" if i else "set_value",
            value=None if i else Decimal(4),
            actor=f"user:{i}",
        ),
    )

    won = [r for r in results if isinstance(r, Conflict)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1
    assert len(lost) == 1
    assert isinstance(lost[0], ConflictNotOpen), lost
    movements = list(StockMovement.objects.filter(reference=f"conflict:{conflict.pk}"))
    assert len(movements) == 1
    level = StockLevel.objects.get(product=shop.product)
    assert level.on_hand == won[0].resolved_value
    assert ConflictEvent.objects.filter(conflict=conflict, action="resolved").count() == 1


def test_conflict_resolve_races_stock_movements_of_the_same_product(make_shop):
    # given: a resolution moving our stock while sales and receipts change the same level
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    def work(i: int):
        if i == 0:
            return conflict_resolve(conflict_id=conflict.pk, strategy="use_theirs", actor="ops")
        delta = Decimal(1) if i % 2 else Decimal(-1)
        return stock_adjust(
            product=shop.product, warehouse=shop.warehouse, delta=delta, origin=ORIGIN
        )

    results = run_concurrently(9, work)

    # then: no deadlock, nothing lost; the ledger adds up to the level. The resolution went
    # first, or found the listing moved by a sale or receipt since the conflict was seen
    # (its figures would count that change twice) and changed nothing.
    resolution = results[0]
    assert [r for r in results[1:] if isinstance(r, Exception)] == []
    assert isinstance(resolution, Conflict | ConflictStale), resolution
    moved = -3 if isinstance(resolution, Conflict) else 0
    level = StockLevel.objects.get(product=shop.product, warehouse=shop.warehouse)
    total = sum(StockMovement.objects.filter(level=level).values_list("on_hand_delta", flat=True))
    assert level.on_hand == total == 10 + moved + 4 - 4
    conflict.refresh_from_db()
    assert conflict.status == ("resolved" if moved else "open")
