"""When moving our stock by a conflict's figures would be wrong: stale figures, ERP-fed stock,
an allocation that is not one for one; and what a resolution leaves alone."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from channels_sync.errors import ConflictStale, ErpManagedStock, StrategyNotApplicable
from channels_sync.models import AllocationRule, ChannelListing, Conflict, ConflictPolicy
from channels_sync.services.conflict_resolution import conflict_resolve
from channels_sync.services.conflicts import conflict_open
from channels_sync.services.dirty import listings_mark_dirty
from channels_sync.services.push import channel_push
from erp_mapping.services.agents import agent_register
from erp_mapping.services.connections import erp_connection_set
from inventory.models import StockLevel, StockMovement
from inventory.services import stock_reserve
from tests.channels_sync.conflict_fixtures import ORIGIN, POLLED
from tests.channels_sync.factories import AllocationRuleFactory
from tests.helpers import wait_for
from tests.inventory.factories import WarehouseFactory

MOVING = [("use_theirs", None), ("set_value", Decimal(4)), ("minimum", None)]


@pytest.fixture
def run_after_commit(django_capture_on_commit_callbacks):
    def run(block):
        with django_capture_on_commit_callbacks(execute=True):
            return block()

    return run


def _resolve(conflict, strategy, value=None) -> Conflict:
    return conflict_resolve(conflict_id=conflict.pk, strategy=strategy, value=value, actor="ops")


def _moved(conflict) -> list[StockMovement]:
    return list(StockMovement.objects.filter(reference=f"conflict:{conflict.pk}"))


def _actions(conflict) -> list[str]:
    return list(conflict.events.order_by("id").values_list("action", flat=True))


def _still_open(conflict) -> None:
    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert _moved(conflict) == []


# --- 1. stale figures --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("strategy", "value"), MOVING)
def test_conflict_stale_after_a_sale_is_not_taken_twice(make_shop, strategy, value):
    # given: we pushed 10, the seller set 7; then a sale of 1 is applied (our stock 9)
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    stock_reserve(product=shop.product, warehouse=shop.warehouse, quantity=1, origin=ORIGIN)

    # when: resolving while the sale's push is pending, then after it went out (9 pushed)
    with pytest.raises(ConflictStale) as pending:
        _resolve(conflict, strategy, value)
    assert pending.value.details["dirty"] is True
    channel_push(channel_id=shop.channel.pk)
    with pytest.raises(ConflictStale) as pushed:
        _resolve(conflict, strategy, value)

    # then: refused both times; theirs - ours (-3) would take the sale a second time
    assert pushed.value.code == "conflict_stale"
    assert pushed.value.details["last_pushed_quantity"] == 9
    assert "reconcile it again" in pushed.value.message
    _still_open(conflict)
    assert shop.on_hand() == 10  # reserved 1, on hand untouched
    assert _actions(conflict) == ["opened"]


@pytest.mark.django_db
def test_conflict_stale_use_ours_and_ignore_still_resolve(make_shop, run_after_commit):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    stock_reserve(product=shop.product, warehouse=shop.warehouse, quantity=1, origin=ORIGIN)

    resolved = run_after_commit(lambda: _resolve(conflict, "use_ours"))

    assert resolved.status == "resolved"
    assert shop.shows() == 9  # our figure, after the sale

    other = make_shop(5)
    stale = other.mismatch(2)
    ChannelListing.objects.filter(pk=other.listing.pk).update(dirty=True)
    assert _resolve(stale, "ignore").status == "ignored"


@pytest.mark.django_db
def test_conflict_stale_push_in_flight_is_refused(make_shop):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    # a push is in flight: its outcome unknown, the last pushed figure is cleared
    ChannelListing.objects.filter(pk=shop.listing.pk).update(last_pushed_quantity=None)

    with pytest.raises(ConflictStale):
        _resolve(conflict, "use_theirs")
    _still_open(conflict)


@pytest.mark.django_db
def test_conflict_stale_policy_writes_failed_and_leaves_it_open(make_shop, run_after_commit):
    # given: a use_theirs channel; the conflict is seen while a sale's push is pending
    # the orders were polled after the observation: the policy is not held back
    shop = make_shop(10, policy=ConflictPolicy.USE_THEIRS, orders_cursor=POLLED)
    stock_reserve(product=shop.product, warehouse=shop.warehouse, quantity=1, origin=ORIGIN)

    conflict = run_after_commit(lambda: shop.mismatch(7))

    _still_open(conflict)
    assert _actions(conflict) == ["opened", "failed"]
    assert conflict.events.get(action="failed").note.startswith("conflict_stale")


@pytest.mark.django_db
def test_conflict_minimum_falling_to_ours_is_never_stale(make_shop, run_after_commit):
    shop = make_shop(4)
    conflict = shop.mismatch(9)
    ChannelListing.objects.filter(pk=shop.listing.pk).update(dirty=True)

    resolved = run_after_commit(lambda: _resolve(conflict, "minimum"))

    assert resolved.details["resolution"]["applied"] == "use_ours"
    assert shop.on_hand() == 4


# --- 2. stock that comes from an ERP -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("strategy", "value"), MOVING)
def test_conflict_erp_agent_vendor_refuses_moving_stock(make_shop, vendor, strategy, value):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    agent_register(vendor=vendor, agent_url="http://agent.test", erp_type="convex")

    with pytest.raises(ErpManagedStock) as refused:
        _resolve(conflict, strategy, value)

    assert refused.value.code == "erp_managed_stock"
    assert refused.value.message.startswith("This vendor's stock comes from its ERP")
    assert "correct it there, or use ours" in refused.value.message
    assert refused.value.details["source"] == "an ERP agent"
    _still_open(conflict)
    assert shop.on_hand() == 10


@pytest.mark.django_db
def test_conflict_erp_connection_vendor_refuses_moving_stock_unless_disabled(make_shop, vendor):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    erp_connection_set(vendor=vendor, base_url="http://erp.test", token="t", actor="test")
    with pytest.raises(ErpManagedStock) as refused:
        _resolve(conflict, "use_theirs")
    assert refused.value.details["source"] == "an enabled ERP connection"

    erp_connection_set(
        vendor=vendor, base_url="http://erp.test", token=None, enabled=False, actor="test"
    )
    assert _resolve(conflict, "use_theirs").status == "resolved"
    assert shop.on_hand() == 7


@pytest.mark.django_db
def test_conflict_erp_vendor_may_use_ours_and_minimum_falling_to_ours(
    make_shop, vendor, run_after_commit
):
    agent_register(vendor=vendor, agent_url="http://agent.test", erp_type="convex")
    shop = make_shop(4)
    higher = shop.mismatch(9)
    resolved = run_after_commit(lambda: _resolve(higher, "minimum"))
    assert (resolved.status, resolved.details["resolution"]["applied"]) == ("resolved", "use_ours")
    assert shop.shows() == 4


@pytest.mark.django_db
def test_conflict_erp_vendor_policy_writes_failed(make_shop, vendor, run_after_commit):
    agent_register(vendor=vendor, agent_url="http://agent.test", erp_type="convex")
    # the orders were polled after the observation: the policy is not held back
    shop = make_shop(10, policy=ConflictPolicy.USE_THEIRS, orders_cursor=POLLED)

    conflict = run_after_commit(lambda: shop.mismatch(7))

    _still_open(conflict)
    assert conflict.events.get(action="failed").note.startswith("erp_managed_stock")


@pytest.mark.django_db
def test_conflict_erp_vendor_oversell_count_is_refused(make_shop, vendor):
    shop = make_shop(10)
    oversell, _ = conflict_open(
        kind=Conflict.Kind.OVERSELL,
        vendor=vendor,
        channel=shop.channel,
        listing=shop.listing,
        source=Conflict.Source.ORDER,
        reference="O-1",
        ours=-2,
        theirs=2,
        details={"orders": [1], "warehouse_id": shop.warehouse.pk},
    )
    agent_register(vendor=vendor, agent_url="http://agent.test", erp_type="convex")

    with pytest.raises(ErpManagedStock):
        _resolve(oversell, "set_value", Decimal(3))
    _still_open(oversell)


# --- 3. allocation that is not one for one -----------------------------------------------------


def _rule_pushed(shop, **fields) -> None:
    """Give the channel a rule and push the listing's quantity under it."""
    AllocationRuleFactory(channel=shop.channel, **fields)
    listings_mark_dirty(listing_ids=[shop.listing.pk])
    channel_push(channel_id=shop.channel.pk)
    shop.listing.refresh_from_db()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"strategy": "percentage", "parameter": Decimal(50)}, "channel rule: percentage 50"),
        ({"buffer_units": Decimal(2)}, "channel rule: all, buffer 2"),
        ({"buffer_percent": Decimal(10)}, "buffer 10%"),
        ({"max_shown": 6}, "max shown 6"),
        ({"zero_below": 3}, "zero below 3"),
        ({"strategy": "equal_split"}, "channel rule: equal_split"),
    ],
)
def test_conflict_allocation_not_one_for_one_refuses_moving_stock(make_shop, fields, named):
    shop = make_shop(10)
    _rule_pushed(shop, **fields)
    conflict = shop.mismatch(1)

    for strategy, value in MOVING:
        with pytest.raises(StrategyNotApplicable) as refused:
            _resolve(conflict, strategy, value)
        assert named in refused.value.message, refused.value.message
        assert refused.value.details["rule"].startswith("channel rule:")
    _still_open(conflict)
    assert shop.on_hand() == 10


@pytest.mark.django_db
def test_conflict_allocation_listing_rule_all_overrides_a_buffered_default(
    make_shop, run_after_commit
):
    # given: the channel holds 2 back, but this listing's own rule shows everything
    shop = make_shop(10)
    AllocationRuleFactory(channel=shop.channel, buffer_units=Decimal(2))
    _rule_pushed(shop, scope=AllocationRule.Scope.LISTING, listing=shop.listing)
    conflict = shop.mismatch(7)

    resolved = run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    assert (resolved.status, shop.on_hand(), resolved.resolved_value) == ("resolved", 7, 7)


@pytest.mark.django_db
def test_conflict_resolved_value_is_the_quantity_pushed(make_shop, run_after_commit):
    # given: 3 reserved past zero (available -3, the channel was sent 0); the channel shows 2
    shop = make_shop(0)
    shop.product.allow_negative_stock = True
    shop.product.save(update_fields=["allow_negative_stock"])
    stock_reserve(product=shop.product, warehouse=shop.warehouse, quantity=3, origin=ORIGIN)
    channel_push(channel_id=shop.channel.pk)
    conflict = shop.mismatch(2)

    resolved = run_after_commit(lambda: _resolve(conflict, "use_theirs"))

    # then: 2 received (available -1): the channel is sent 0, and 0 is the resolved value
    assert shop.on_hand() == 2
    assert shop.shows() == 0
    assert resolved.resolved_value == 0
    assert resolved.details["resolution"]["target"] == "2.000"
    assert conflict.events.get(action="resolved").value == 0


# --- what a resolution leaves alone ------------------------------------------------------------


@pytest.mark.django_db
def test_conflict_use_ours_makes_no_empty_stock_levels(make_shop, warehouse, vendor):
    # given: the channel also sells from a warehouse that never held the product
    second = WarehouseFactory(vendor=vendor, code="EMPTY")
    shop = make_shop(4, warehouses=[warehouse, second])
    conflict = shop.mismatch(9)  # minimum comes down to ours

    _resolve(conflict, "minimum")

    assert not StockLevel.objects.filter(product=shop.product, warehouse=second).exists()


@pytest.mark.django_db
def test_conflict_oversell_count_refused_for_orders_from_several_warehouses(
    make_shop, vendor, warehouse
):
    shop = make_shop(10)
    other = WarehouseFactory(vendor=vendor, code="B2")
    for order_id, line_warehouse in ((1, warehouse), (2, other)):
        oversell, _ = conflict_open(
            kind=Conflict.Kind.OVERSELL,
            vendor=vendor,
            channel=shop.channel,
            listing=shop.listing,
            source=Conflict.Source.ORDER,
            reference=f"O-{order_id}",
            ours=-order_id,
            theirs=order_id,
            details={
                "orders": [order_id],
                "warehouse_id": line_warehouse.pk,
                "warehouse_ids": [line_warehouse.pk],
            },
        )
    assert oversell.details["warehouse_ids"] == [warehouse.pk, other.pk]

    with pytest.raises(StrategyNotApplicable) as refused:
        _resolve(oversell, "set_value", Decimal(3))

    assert "several warehouses (B2, MAIN)" in refused.value.message
    _still_open(oversell)
    assert _resolve(oversell, "use_ours").status == "resolved"


# --- 6. changes while a resolution waits for its locks ------------------------------------------


def _while_resolving(conflict, strategy: str, change) -> object:
    """Resolve in a thread while `change` holds its locks in an open transaction; return
    what the resolution returned or raised."""
    outcome: list = []

    def resolve() -> None:
        try:
            outcome.append(_resolve(conflict, strategy))
        except Exception as exc:
            outcome.append(exc)
        finally:
            connection.close()

    def waiting() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            return cursor.fetchone()[0] > 0

    with transaction.atomic():
        change()
        worker = threading.Thread(target=resolve)
        worker.start()
        wait_for(waiting)  # it has read the conflict and waits for a row we hold
    worker.join(15)
    assert len(outcome) == 1
    return outcome[0]


@pytest.mark.django_db(transaction=True)
def test_conflict_figures_changed_during_the_resolution_answer_stale(make_shop):
    # given: ours 10, theirs 12: minimum comes down to ours when the resolution starts
    shop = make_shop(10)
    conflict = shop.mismatch(12)

    # when: the reconciliation sees 5 meanwhile (minimum would now move our stock)
    result = _while_resolving(conflict, "minimum", lambda: shop.mismatch(5))

    # then: refused, nothing moved; resolved again, it takes the new figures
    assert isinstance(result, ConflictStale), repr(result)
    assert "changed while it was being resolved" in result.message
    _still_open(conflict)
    assert (conflict.ours, conflict.theirs) == (10, 5)
    assert _resolve(conflict, "minimum").details["resolution"]["applied"] == "use_theirs"
    assert shop.on_hand() == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("strategy", ["use_ours", "use_theirs"])
def test_conflict_listing_deleted_during_the_resolution_is_refused_clearly(make_shop, strategy):
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    # when: a staff member deletes the listing; the resolution has checked it, then waits
    result = _while_resolving(
        conflict,
        strategy,
        lambda: ChannelListing.objects.filter(pk=shop.listing.pk).delete(),
    )

    # then: a clear refusal (never an AttributeError), nothing changed
    assert isinstance(result, StrategyNotApplicable), repr(result)
    assert result.details["applicable"] == ["ignore"]
    _still_open(conflict)
    assert shop.on_hand() == 10
