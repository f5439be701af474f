"""The hot-path dict builders give exactly what the documented serializers give."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from inventory.models import StockLevel, StockMovement
from inventory.selectors import stock_summary
from inventory.serializers import (
    StockLevelSerializer,
    StockMovementSerializer,
    StockSummarySerializer,
    level_data,
    movement_data,
    stock_summary_data,
)
from inventory.services import Origin, stock_adjust, stock_reserve

pytestmark = pytest.mark.django_db


def test_fast_representations_match_the_serializers(stocked, warehouse, store):
    product = stocked("12.5")
    stock_adjust(
        product=product,
        warehouse=store,
        delta=Decimal("1.25"),
        unit_cost=Decimal("3.3333"),
        origin=Origin(source="t", actor="a", reason="r", reference="x"),
    )
    stock_reserve(
        product=product, warehouse=warehouse, quantity=Decimal(2), origin=Origin("t", "a")
    )
    StockLevel.objects.filter(warehouse=warehouse).update(
        min_stock=Decimal("3"), last_synced_at=datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    )

    for level in StockLevel.objects.select_related("product", "warehouse"):
        assert level_data(level) == StockLevelSerializer(level).data
    for movement in StockMovement.objects.select_related("level__product", "level__warehouse"):
        assert movement_data(movement) == StockMovementSerializer(movement).data
    summary = stock_summary(sku=product.sku)
    assert stock_summary_data(summary) == StockSummarySerializer(summary).data
