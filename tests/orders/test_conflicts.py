"""The conflicts orders find: a line sold past zero (oversell), one marketplace order id on two
of a vendor's channels (duplicate order)."""

import json
import uuid
from decimal import Decimal

import pytest
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.db.models import sql

from channels_sync.adapters import OrderStatus
from channels_sync.hooks import OrderFacts
from channels_sync.models import Conflict, ConflictEvent
from channels_sync.selectors_conflicts import (
    order_conflict_candidates,
    order_conflict_counts,
    order_conflicts,
)
from inventory.models import Product, Vendor
from inventory.services import Origin, stock_set
from orders.models import Order
from orders.services import Actor, OrderLineInput, order_apply_market, order_create
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory
from tests.inventory.factories import VendorFactory, WarehouseFactory
from tests.inventory.test_concurrency import run_concurrently
from tests.orders.conftest import market_line, market_order

S = OrderStatus
ORIGIN = Origin(source="test", actor="test")


def _apply(channel, lines, **kwargs) -> Order:
    return order_apply_market(
        channel=channel, order=market_order(S.PAID, lines, **kwargs), source="webhook"
    )


# --- oversell ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_oversold_line_opens_an_oversell_conflict_on_its_listing(channel, listed, warehouse):
    # given: 2 available
    product, keys = listed(2)

    # when: the marketplace sold 5
    order = _apply(channel, [market_line(keys, 5)])

    # then
    line = order.lines.get()
    assert line.status == "short"
    conflict = Conflict.objects.get()
    assert (conflict.kind, conflict.status, conflict.source) == ("oversell", "open", "order")
    assert conflict.listing == channel.listings.get(product=product)
    assert conflict.product == product
    assert conflict.channel == channel
    assert conflict.reference == order.external_id
    assert (conflict.ours, conflict.theirs) == (Decimal(-3), Decimal(3))
    assert conflict.details["orders"] == [order.pk]
    assert conflict.details["warehouse_id"] == warehouse.pk
    assert conflict.details["line"] == line.line_number


@pytest.mark.django_db
def test_oversell_seen_again_updates_the_open_conflict_and_joins_the_orders(channel, listed):
    _, keys = listed(2)
    first = _apply(channel, [market_line(keys, 5)], external_id="A1")
    # the same detail again: the line is held already, nothing new
    _apply(channel, [market_line(keys, 5)], external_id="A1")
    second = _apply(channel, [market_line(keys, 1)], external_id="A2")

    conflict = Conflict.objects.get()
    assert conflict.details["orders"] == [first.pk, second.pk]
    assert (conflict.ours, conflict.theirs) == (Decimal(-4), Decimal(4))
    actions = list(conflict.events.order_by("id").values_list("action", flat=True))
    assert actions == ["opened", "updated"]


@pytest.mark.django_db
def test_line_with_stock_opens_no_conflict(channel, listed):
    _, keys = listed(5)
    _apply(channel, [market_line(keys, 5)])
    assert not Conflict.objects.exists()


@pytest.mark.django_db
def test_api_order_short_of_stock_is_refused_and_opens_no_conflict(stocked, vendor):
    product = stocked(1)
    with pytest.raises(Exception, match="Not enough stock"):
        order_create(
            vendor=vendor,
            order_number="API-1",
            lines=[OrderLineInput(sku=product.sku, quantity=Decimal("2"))],
            actor=Actor(source="api", actor="api:test"),
        )
    assert not Conflict.objects.exists()


@pytest.mark.django_db
def test_oversell_conflict_failure_never_fails_the_order(channel, listed, monkeypatch, log_lines):
    import orders.services.conflicts as detection

    def broken(**kwargs):
        raise RuntimeError("conflict store down")

    monkeypatch.setattr(detection, "conflict_open", broken)
    _, keys = listed(1)

    order = _apply(channel, [market_line(keys, 3)])

    assert order.lines.get().status == "short"
    assert not Conflict.objects.exists()
    assert "order.conflict_open_failed" in [line.get("event") for line in log_lines()]


# --- duplicate orders --------------------------------------------------------------------------


@pytest.fixture
def second_channel(vendor, warehouse):
    return ChannelFactory(vendor=vendor, warehouses=[warehouse], name="second shop")


@pytest.mark.django_db
def test_same_marketplace_id_on_two_channels_opens_a_duplicate_order_conflict(
    channel, second_channel, listed
):
    product, keys = listed(10)
    ChannelListingFactory(
        channel=second_channel,
        product=product,
        external_item_id=keys["item_id"],
        external_variant_id=keys["model_id"],
        dirty=False,
    )
    first = _apply(channel, [market_line(keys, 1)], external_id="DUP-1")
    # the first channel sees it again: no conflict
    _apply(channel, [market_line(keys, 1)], external_id="DUP-1", minutes=1)
    assert not Conflict.objects.exists()

    second = _apply(second_channel, [market_line(keys, 1)], external_id="DUP-1")

    conflict = Conflict.objects.get()
    assert (conflict.kind, conflict.reference, conflict.listing) == (
        "duplicate_order",
        "DUP-1",
        None,
    )
    assert conflict.channel == second_channel
    assert conflict.details == {
        "orders": [first.pk, second.pk],
        "channels": [channel.pk, second_channel.pk],
    }
    assert (conflict.ours, conflict.theirs) == (None, None)
    # both orders stand, each with its own number
    assert Order.objects.filter(external_id="DUP-1").count() == 2
    # seen again on the second channel: still one conflict, one event
    _apply(second_channel, [market_line(keys, 1)], external_id="DUP-1", minutes=2)
    assert Conflict.objects.count() == 1
    assert ConflictEvent.objects.count() == 1


@pytest.mark.django_db
def test_same_marketplace_id_at_another_vendor_is_no_duplicate(channel, listed):
    other_vendor = VendorFactory()
    other = ChannelFactory(
        vendor=other_vendor, warehouses=[WarehouseFactory(vendor=other_vendor, code="OTHER")]
    )
    _, keys = listed(10)
    _apply(channel, [market_line(keys, 1)], external_id="SAME")
    _apply(other, [market_line(keys, 1)], external_id="SAME")
    assert not Conflict.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_duplicate_first_sightings_at_once_on_two_channels_make_one_conflict(
    channel, second_channel, listed
):
    # given: four channels of one vendor receive the same marketplace order id at once
    _, keys = listed(10)
    channels = [channel, second_channel]
    channels += [ChannelFactory(vendor=channel.vendor, name=f"shop {n}") for n in (3, 4)]

    results = run_concurrently(
        len(channels), lambda i: _apply(channels[i], [market_line(keys, 1)], external_id="RACE")
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    conflict = Conflict.objects.get(kind="duplicate_order")
    assert sorted(conflict.details["orders"]) == sorted(r.pk for r in results)
    assert sorted(conflict.details["channels"]) == sorted(c.pk for c in channels)


# --- the conflicts naming an order (the order console's link) ----------------------------------


def _named(order) -> list[int]:
    return sorted(order_conflicts(order_id=order.pk).values_list("pk", flat=True))


@pytest.mark.django_db
def test_order_conflicts_are_exactly_those_naming_the_order(channel, second_channel, listed):
    # given: A oversold P (conflict 1, then ignored); B oversold P again (conflict 2); C sold
    # P with stock; D's marketplace id is also on the second channel (a duplicate)
    product, keys = listed(2)
    a = _apply(channel, [market_line(keys, 3)], external_id="A")
    first = Conflict.objects.get()
    first.status = "ignored"
    first.save(update_fields=["status", "updated_at"])
    b = _apply(channel, [market_line(keys, 1)], external_id="B")
    second = Conflict.objects.exclude(pk=first.pk).get()
    stock_set(product=product, warehouse=a.lines.get().warehouse, quantity=50, origin=ORIGIN)
    c = _apply(channel, [market_line(keys, 1)], external_id="C")
    other, other_keys = listed(10)
    ChannelListingFactory(
        channel=second_channel,
        product=other,
        external_item_id=other_keys["item_id"],
        external_variant_id=other_keys["model_id"],
        dirty=False,
    )
    d = _apply(channel, [market_line(other_keys, 1)], external_id="D")
    d2 = _apply(second_channel, [market_line(other_keys, 1)], external_id="D")
    duplicate = Conflict.objects.get(kind="duplicate_order")

    # then: each order finds what names it, and nothing else
    assert _named(a) == [first.pk]
    assert _named(b) == [second.pk]
    assert _named(c) == []
    assert _named(d) == _named(d2) == [duplicate.pk]
    assert order_conflict_counts(order_id=a.pk) == (1, 0)
    assert order_conflict_counts(order_id=b.pk) == (1, 1)
    assert order_conflicts(order_id=10**15).count() == 0


@pytest.mark.django_db
def test_oversell_conflict_keeps_the_warehouse_of_every_oversold_order(channel, listed, warehouse):
    _, keys = listed(1)
    _apply(channel, [market_line(keys, 2)], external_id="W1")
    _apply(channel, [market_line(keys, 2)], external_id="W2")
    assert Conflict.objects.get().details["warehouse_ids"] == [warehouse.pk]


@pytest.fixture
def sqlite():
    """Django's SQLite backend on an in-memory database (the embedded default's engine),
    holding the conflicts' tables: the order console's query must run there too."""
    settings = connections.configure_settings(
        {DEFAULT_DB_ALIAS: {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )[DEFAULT_DB_ALIAS]
    wrapper = SQLiteWrapper(settings, alias="conflicts_sqlite")
    with wrapper.schema_editor(atomic=False) as editor:
        for model in (Vendor, Product, Conflict):
            editor.create_model(model)
    wrapper.disable_constraint_checking()  # the channels' and listings' tables are not here
    yield wrapper
    wrapper.close()


def _sqlite_insert(wrapper, obj) -> None:
    """INSERT the object's row as Django writes it on SQLite (its pk given)."""
    query = sql.InsertQuery(type(obj))
    query.insert_values(type(obj)._meta.concrete_fields, [obj])
    with wrapper.cursor() as cursor:
        for statement, params in query.get_compiler(connection=wrapper).as_sql():
            cursor.execute(statement, params)


def _sqlite_rows(wrapper, queryset) -> list:
    statement, params = queryset.query.get_compiler(connection=wrapper).as_sql()
    with wrapper.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


@pytest.mark.django_db  # (the blocker would refuse any connection; this one is SQLite's)
def test_order_conflict_query_runs_on_sqlite(sqlite):
    from datetime import timedelta

    from django.utils import timezone

    # given: an oversell naming orders 7 and 8, and a resolved one naming 9, in SQLite
    vendor = Vendor(pk=uuid.uuid4(), name="v", is_default=True)
    product = Product(pk=1, vendor=vendor, sku="P", name="p")
    named = Conflict(
        pk=1,
        kind="oversell",
        vendor=vendor,
        product=product,
        source="order",
        reference="X",
        detected_at=timezone.now(),
        details={"orders": [7, 8]},
    )
    other = Conflict(
        pk=2,
        kind="oversell",
        vendor=vendor,
        product=product,
        source="order",
        reference="Y",
        status="resolved",
        detected_at=timezone.now(),
        details={"orders": [9]},
    )
    for obj in (vendor, product, named, other):
        _sqlite_insert(sqlite, obj)
    facts = OrderFacts(
        order_id=8,
        vendor_id=vendor.pk,
        references=("Z", "N-8"),
        product_ids=(product.pk,),
        created_at=timezone.now() - timedelta(minutes=5),
    )

    # when: the console's query runs on SQLite
    rows = _sqlite_rows(sqlite, order_conflict_candidates(facts).values_list("pk", "details"))

    # then: it runs and finds both candidates; their details name order 8 in one
    assert sorted(pk for pk, _ in rows) == [1, 2]
    assert [pk for pk, details in rows if 8 in json.loads(details)["orders"]] == [1]
    # (the JSON containment lookup it replaces cannot even be written for SQLite)
    with pytest.raises(NotSupportedError):
        _sqlite_rows(sqlite, Conflict.objects.filter(details__orders__contains=[8]))
