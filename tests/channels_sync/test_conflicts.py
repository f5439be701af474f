"""Conflicts: every strategy (stock, ledger and the push to a sandbox), the constraints, the
channel policy's automatic resolution."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_sync.errors import ConflictNotOpen, InvalidResolutionValue, StrategyNotApplicable
from channels_sync.models import ChannelListing, Conflict, ConflictEvent, ConflictPolicy
from channels_sync.services.conflict_resolution import conflict_auto_resolve, conflict_resolve
from channels_sync.services.conflicts import conflict_open
from inventory.errors import InsufficientStock
from inventory.models import StockMovement
from inventory.services import stock_set
from tests.channels_sync.conflict_fixtures import ORIGIN, POLLED
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory
from tests.inventory.factories import ProductFactory, WarehouseFactory

pytestmark = pytest.mark.django_db


# The channel's orders were polled past the observations of these tests: a figure below ours
# is not a late sale waiting for its order (see `channels_sync.services.reconcile_guard`).
@pytest.fixture
def run_after_commit(django_capture_on_commit_callbacks):
    """Run a block's after-commit callbacks (the queued pushes, eager) when it ends."""

    def run(block):
        with django_capture_on_commit_callbacks(execute=True):
            return block()

    return run


def _resolve(conflict, strategy, **kwargs) -> Conflict:
    return conflict_resolve(conflict_id=conflict.pk, strategy=strategy, actor="user:ops", **kwargs)


def _conflict_movements(conflict) -> list[StockMovement]:
    return list(StockMovement.objects.filter(reference=f"conflict:{conflict.pk}"))


def _actions(conflict) -> list[str]:
    return list(conflict.events.order_by("id").values_list("action", flat=True))


def _two_warehouse_shop(make_shop, warehouse, vendor, first: int, second: int, **fields):
    """A shop selling from the default warehouse (`first` units) and SECOND (`second`)."""
    other = WarehouseFactory(vendor=vendor, code="SECOND")
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(first), origin=ORIGIN)
    stock_set(product=product, warehouse=other, quantity=Decimal(second), origin=ORIGIN)
    return make_shop(first + second, product=product, warehouses=[warehouse, other], **fields)


# --- stock mismatch: each strategy -------------------------------------------------------------


def test_conflict_use_ours_pushes_our_quantity_again_and_moves_no_stock(
    make_shop, run_after_commit
):
    # given: we pushed 10; the seller set 7 in the marketplace's console
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    assert shop.shows() == 7

    # when
    resolved = run_after_commit(lambda: _resolve(conflict, "use_ours", note="ours is counted"))

    # then: the channel shows ours again, our stock is unchanged
    assert shop.shows() == 10
    assert shop.on_hand() == 10
    assert _conflict_movements(conflict) == []
    assert (resolved.status, resolved.strategy, resolved.resolved_value) == (
        "resolved",
        "use_ours",
        10,
    )
    assert resolved.resolved_by == "user:ops"
    assert resolved.note == "ours is counted"
    assert resolved.details["resolution"]["applied"] == "use_ours"
    assert _actions(conflict) == ["opened", "resolved"]
    event = conflict.events.get(action="resolved")
    assert (event.strategy, event.ours, event.theirs, event.value) == ("use_ours", 10, 7, 10)


def test_conflict_use_theirs_moves_our_stock_with_a_ledger_movement(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    calls = shop.server.app.counts["stock_calls"]

    resolved = run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    # then: our stock followed theirs, explained in the ledger
    assert shop.on_hand() == 7
    (movement,) = _conflict_movements(conflict)
    assert (movement.kind, movement.on_hand_delta, movement.source) == ("adjust", -3, "conflict")
    assert f"conflict #{conflict.pk}" in movement.reason
    assert "ours 10" in movement.reason
    assert "theirs 7" in movement.reason
    assert movement.actor == "user:ops"
    assert (resolved.status, resolved.resolved_value) == ("resolved", 7)
    assert resolved.details["resolution"]["movements"] == [movement.pk]
    # and the channel keeps theirs: the listing is re-planned, nothing needs sending
    assert shop.shows() == 7
    assert shop.server.app.counts["stock_calls"] == calls
    listing = ChannelListing.objects.get(pk=shop.listing.pk)
    assert (listing.last_pushed_quantity, listing.dirty) == (7, False)


def test_conflict_use_theirs_increase_receives_into_the_channel_warehouse(
    make_shop, run_after_commit
):
    shop = make_shop(10)
    conflict = shop.mismatch(12)

    run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    assert shop.on_hand() == 12
    assert shop.shows() == 12
    assert [m.on_hand_delta for m in _conflict_movements(conflict)] == [2]


def test_conflict_use_theirs_decrease_takes_a_warehouse_that_can_cover_it(
    make_shop, warehouse, vendor, run_after_commit
):
    # given: the channel sells from the default warehouse (1 unit) and a second one (9)
    shop = _two_warehouse_shop(make_shop, warehouse, vendor, 1, 9)
    second = shop.channel.warehouses.get(code="SECOND")
    conflict = shop.mismatch(7)

    # when: theirs is 3 below ours
    run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    # then: the default warehouse cannot give 3; the second one does
    assert shop.on_hand(warehouse) == 1
    assert shop.on_hand(second) == 6
    (movement,) = _conflict_movements(conflict)
    assert movement.level.warehouse_id == second.pk


def test_conflict_use_theirs_decrease_refused_when_no_warehouse_has_it(
    make_shop, warehouse, vendor
):
    # given: 10 pushed from two warehouses of 5 each; the channel shows 2
    shop = _two_warehouse_shop(make_shop, warehouse, vendor, 5, 5)
    conflict = shop.mismatch(2)

    # when: 8 must come out, and no one warehouse holds 8
    with pytest.raises(InsufficientStock):
        _resolve(conflict, "use_theirs")

    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert _conflict_movements(conflict) == []
    assert shop.on_hand() == 5
    assert _actions(conflict) == ["opened"]


def test_conflict_minimum_takes_theirs_when_lower_else_pushes_ours(make_shop, run_after_commit):
    lower = make_shop(10)
    conflict = lower.mismatch(6)
    run_after_commit(lambda: _resolve(conflict, "minimum"))
    assert (lower.on_hand(), lower.shows()) == (6, 6)
    conflict.refresh_from_db()
    assert conflict.details["resolution"]["applied"] == "use_theirs"
    assert conflict.resolved_value == 6

    higher = make_shop(4)
    conflict = higher.mismatch(9)
    run_after_commit(lambda: _resolve(conflict, "minimum"))
    assert (higher.on_hand(), higher.shows()) == (4, 4)
    conflict.refresh_from_db()
    assert conflict.details["resolution"]["applied"] == "use_ours"
    assert conflict.resolved_value == 4


def test_conflict_set_value_sets_both_sides(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    resolved = run_after_commit(lambda: _resolve(conflict, "set_value", value=Decimal(4)))

    assert shop.on_hand() == 4
    assert shop.shows() == 4
    assert [m.on_hand_delta for m in _conflict_movements(conflict)] == [-6]
    assert (resolved.strategy, resolved.resolved_value) == ("set_value", 4)


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "needs a value"), (Decimal("-1"), "0 or more"), ("abc", "not a number")],
)
def test_conflict_set_value_refuses_a_missing_or_bad_value(make_shop, value, message):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    with pytest.raises(InvalidResolutionValue) as refused:
        _resolve(conflict, "set_value", value=value)
    assert refused.value.code == "invalid_value"
    assert refused.value.details["field"] == "value"
    assert message in refused.value.message
    conflict.refresh_from_db()
    assert conflict.status == "open"


def test_conflict_value_only_goes_with_set_value(make_shop):
    conflict = make_shop(10).mismatch(7)
    with pytest.raises(InvalidResolutionValue):
        _resolve(conflict, "use_ours", value=Decimal(3))


@pytest.mark.parametrize(
    ("theirs_minutes", "ours_minutes", "applied"),
    [(5, 0, "use_theirs"), (0, 5, "use_ours"), (3, 3, "use_ours"), (None, 0, "use_ours")],
)
def test_conflict_last_write_wins_takes_the_newer_figure(
    make_shop, run_after_commit, theirs_minutes, ours_minutes, applied
):
    shop = make_shop(10)
    base = timezone.now() - timedelta(hours=1)
    conflict = shop.mismatch(
        7,
        ours_at=base + timedelta(minutes=ours_minutes),
        theirs_at=None if theirs_minutes is None else base + timedelta(minutes=theirs_minutes),
    )

    run_after_commit(lambda: _resolve(conflict, "last_write_wins"))

    conflict.refresh_from_db()
    assert conflict.details["resolution"]["applied"] == applied
    expected = 7 if applied == "use_theirs" else 10
    assert (shop.on_hand(), shop.shows()) == (expected, expected)


@pytest.mark.parametrize(("own_priority", "applied"), [(1, "use_theirs"), (50, "use_ours")])
def test_conflict_source_priority_trusts_the_first_channel(
    make_shop, run_after_commit, vendor, own_priority, applied
):
    # given: another active channel lists the product at priority 10
    shop = make_shop(10, priority=own_priority)
    other = ChannelFactory(vendor=vendor, priority=10)
    ChannelListingFactory(channel=other, product=shop.product, dirty=False)
    conflict = shop.mismatch(7)

    run_after_commit(lambda: _resolve(conflict, "source_priority"))

    conflict.refresh_from_db()
    assert conflict.details["resolution"]["applied"] == applied
    assert shop.on_hand() == (7 if applied == "use_theirs" else 10)


def test_conflict_source_priority_ignores_inactive_channels(make_shop, run_after_commit, vendor):
    shop = make_shop(10, priority=50)
    other = ChannelFactory(vendor=vendor, priority=1, active=False)
    ChannelListingFactory(channel=other, product=shop.product, dirty=False)
    conflict = shop.mismatch(7)
    run_after_commit(lambda: _resolve(conflict, "source_priority"))
    assert shop.on_hand() == 7


def test_conflict_ignore_changes_nothing(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    calls = shop.server.app.counts["stock_calls"]

    resolved = run_after_commit(lambda: _resolve(conflict, "ignore", note="marketplace promo"))

    assert resolved.status == "ignored"
    assert (shop.on_hand(), shop.shows()) == (10, 7)
    assert shop.server.app.counts["stock_calls"] == calls
    assert _actions(conflict) == ["opened", "ignored"]


def test_conflict_resolved_once_then_conflict_not_open(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    with pytest.raises(ConflictNotOpen) as refused:
        _resolve(conflict, "use_theirs")

    assert refused.value.details["status"] == "resolved"
    assert shop.on_hand() == 7  # moved once
    assert len(_conflict_movements(conflict)) == 1


def test_conflict_resolution_rolls_back_with_its_transaction(make_shop):
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    def resolve_then_crash() -> None:
        with transaction.atomic():
            _resolve(conflict, "use_theirs")
            raise RuntimeError("crash after the resolution, before the commit")

    with pytest.raises(RuntimeError):
        resolve_then_crash()

    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert shop.on_hand() == 10
    assert _conflict_movements(conflict) == []
    assert _actions(conflict) == ["opened"]


def test_conflict_with_its_listing_gone_can_only_be_ignored(make_shop):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    ChannelListing.objects.filter(pk=shop.listing.pk).delete()
    with pytest.raises(StrategyNotApplicable):
        _resolve(conflict, "use_ours")
    assert _resolve(conflict, "ignore").status == "ignored"


# --- oversell and duplicate orders -------------------------------------------------------------


def _oversell(shop) -> Conflict:
    conflict, _ = conflict_open(
        kind=Conflict.Kind.OVERSELL,
        vendor=shop.channel.vendor,
        channel=shop.channel,
        listing=shop.listing,
        source=Conflict.Source.ORDER,
        reference="250301ABC",
        ours=-2,
        theirs=2,
        details={"orders": [1], "warehouse_id": shop.warehouse.pk},
    )
    return conflict


def test_conflict_oversell_use_ours_sends_every_listing_its_quantity_again(
    make_shop, run_after_commit
):
    shop = make_shop(10)
    shop.edit_behind_our_back(3)
    conflict = _oversell(shop)

    resolved = run_after_commit(lambda: _resolve(conflict, "use_ours"))

    assert resolved.status == "resolved"
    assert shop.shows() == 10  # sent although our desired quantity had not changed
    assert _conflict_movements(conflict) == []


def test_conflict_oversell_set_value_counts_the_line_warehouse(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = _oversell(shop)

    resolved = run_after_commit(lambda: _resolve(conflict, "set_value", value=Decimal(2)))

    assert shop.on_hand() == 2
    (movement,) = _conflict_movements(conflict)
    assert (movement.kind, movement.on_hand_delta, movement.source) == ("count", -8, "conflict")
    assert shop.shows() == 2
    assert resolved.resolved_value == 2


@pytest.mark.parametrize(
    "strategy", ["use_theirs", "minimum", "last_write_wins", "source_priority"]
)
def test_conflict_oversell_refuses_stock_mismatch_strategies(make_shop, strategy):
    conflict = _oversell(make_shop(10))
    with pytest.raises(StrategyNotApplicable) as refused:
        _resolve(conflict, strategy)
    assert refused.value.code == "strategy_not_applicable"
    assert refused.value.details["applicable"] == ["use_ours", "set_value", "ignore"]


def test_conflict_duplicate_order_use_ours_or_ignore_only(vendor):
    channel = ChannelFactory(vendor=vendor)
    conflict, _ = conflict_open(
        kind=Conflict.Kind.DUPLICATE_ORDER,
        vendor=vendor,
        channel=channel,
        source=Conflict.Source.ORDER,
        reference="X-1",
        ours=None,
        theirs=None,
        details={"orders": [1, 2]},
    )
    for strategy in ("use_theirs", "set_value", "minimum"):
        with pytest.raises(StrategyNotApplicable):
            _resolve(conflict, strategy, **({"value": 1} if strategy == "set_value" else {}))
    resolved = _resolve(conflict, "use_ours", note="two shops, two sales")
    assert (resolved.status, resolved.resolved_value) == ("resolved", None)


# --- opening, and the constraints --------------------------------------------------------------


def test_conflict_open_again_updates_the_open_one(make_shop):
    shop = make_shop(10)
    first = shop.mismatch(7)

    same = shop.mismatch(7)
    moved = shop.mismatch(6)

    assert same.pk == first.pk == moved.pk
    assert Conflict.objects.count() == 1
    assert (moved.ours, moved.theirs) == (10, 6)
    assert _actions(first) == ["opened", "updated"]  # the repeat with the same figures: nothing


def test_conflict_open_merges_details_joining_lists(make_shop):
    shop = make_shop(10)
    _oversell(shop)
    conflict, created = conflict_open(
        kind=Conflict.Kind.OVERSELL,
        vendor=shop.channel.vendor,
        channel=shop.channel,
        listing=shop.listing,
        source=Conflict.Source.ORDER,
        reference="250301XYZ",
        ours=-5,
        theirs=5,
        details={"orders": [2], "warehouse_id": shop.warehouse.pk},
    )
    assert not created
    assert conflict.details["orders"] == [1, 2]
    assert conflict.reference == "250301XYZ"


def test_conflict_constraint_one_open_per_kind_and_listing(make_shop):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    fields = {
        "kind": "stock_mismatch",
        "vendor": shop.channel.vendor,
        "channel": shop.channel,
        "listing": shop.listing,
        "source": "reconciliation",
    }
    # a second open one is refused by the database
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.create(**fields)
    # another kind on the same listing is another conflict
    Conflict.objects.create(**{**fields, "kind": "oversell", "source": "order"})
    # once resolved, the next mismatch opens a new one
    _resolve(conflict, "ignore")
    again = shop.mismatch(8)
    assert again.pk != conflict.pk
    assert again.status == "open"


def test_conflict_constraint_one_open_per_kind_vendor_and_reference_without_listing(vendor):
    fields = {"kind": "duplicate_order", "vendor": vendor, "source": "order", "reference": "R-1"}
    first = Conflict.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Conflict.objects.create(**fields)
    Conflict.objects.create(**{**fields, "reference": "R-2"})
    Conflict.objects.filter(pk=first.pk).update(status="resolved")
    Conflict.objects.create(**fields)
    assert Conflict.objects.filter(reference="R-1").count() == 2


# --- the channel's policy ----------------------------------------------------------------------


def test_conflict_policy_use_ours_resolves_automatically_after_commit(make_shop, run_after_commit):
    shop = make_shop(10, policy=ConflictPolicy.USE_OURS, orders_cursor=POLLED)

    conflict = run_after_commit(lambda: shop.mismatch(7))

    conflict.refresh_from_db()
    assert (conflict.status, conflict.strategy, conflict.resolved_by) == (
        "auto_resolved",
        "use_ours",
        "system",
    )
    assert shop.shows() == 10
    assert _actions(conflict) == ["opened", "auto_resolved"]


def test_conflict_policy_use_theirs_resolves_by_moving_stock(make_shop, run_after_commit):
    shop = make_shop(10, policy=ConflictPolicy.USE_THEIRS, orders_cursor=POLLED)
    conflict = run_after_commit(lambda: shop.mismatch(8))
    conflict.refresh_from_db()
    assert conflict.status == "auto_resolved"
    assert shop.on_hand() == 8


def test_conflict_policy_last_write_wins_always_takes_theirs(make_shop, run_after_commit):
    # An observation is always read after our last push: as a policy this is use_theirs.
    shop = make_shop(10, policy=ConflictPolicy.LAST_WRITE_WINS, orders_cursor=POLLED)
    conflict = run_after_commit(lambda: shop.mismatch(8))
    conflict.refresh_from_db()
    assert conflict.theirs_at > conflict.ours_at
    assert (conflict.status, conflict.details["resolution"]["applied"]) == (
        "auto_resolved",
        "use_theirs",
    )
    assert shop.on_hand() == 8


def test_conflict_policy_manual_leaves_it_open(make_shop, run_after_commit):
    shop = make_shop(10, policy=ConflictPolicy.MANUAL)
    conflict = run_after_commit(lambda: shop.mismatch(7))
    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert shop.shows() == 7
    assert _actions(conflict) == ["opened"]


def test_conflict_policy_never_resolves_other_kinds(make_shop, run_after_commit):
    shop = make_shop(10, policy=ConflictPolicy.USE_OURS)
    conflict = run_after_commit(lambda: _oversell(shop))
    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert conflict_auto_resolve(conflict_id=conflict.pk) == "skipped"


def test_conflict_policy_refused_records_failed_and_stays_open(
    make_shop, run_after_commit, warehouse, vendor
):
    # given: theirs asks for a decrease no one warehouse can take (5 + 5 pushed, 2 shown)
    shop = _two_warehouse_shop(
        make_shop, warehouse, vendor, 5, 5, policy=ConflictPolicy.USE_THEIRS, orders_cursor=POLLED
    )

    conflict = run_after_commit(lambda: shop.mismatch(2))

    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert _actions(conflict) == ["opened", "failed"]
    failed = conflict.events.get(action="failed")
    assert failed.strategy == "use_theirs"
    assert failed.note.startswith("insufficient_stock")
    # seen again with the same figures: not tried again (it would fail the same way)
    run_after_commit(lambda: shop.mismatch(2))
    assert _actions(conflict) == ["opened", "failed"]
    # new figures are tried again
    run_after_commit(lambda: shop.mismatch(9))
    conflict.refresh_from_db()
    assert conflict.status == "auto_resolved"
    assert shop.on_hand() == 4


def test_conflict_policy_turned_manual_before_the_task_runs(make_shop):
    shop = make_shop(10, policy=ConflictPolicy.USE_OURS)
    conflict = shop.mismatch(7)  # the task is queued on commit, which never comes here
    shop.channel.conflict_policy = ConflictPolicy.MANUAL
    shop.channel.save(update_fields=["conflict_policy"])

    assert conflict_auto_resolve(conflict_id=conflict.pk) == "skipped"
    assert conflict_auto_resolve(conflict_id=10**12) == "skipped"
    conflict.refresh_from_db()
    assert conflict.status == "open"


def test_conflict_auto_resolve_task_is_idempotent(make_shop, run_after_commit):
    from channels_sync.tasks import conflict_auto_resolve as task

    shop = make_shop(10, policy=ConflictPolicy.USE_OURS, orders_cursor=POLLED)
    conflict = run_after_commit(lambda: shop.mismatch(7))

    assert task.apply(kwargs={"conflict_id": conflict.pk}).get() == "skipped"
    assert ConflictEvent.objects.filter(conflict=conflict, action="auto_resolved").count() == 1
