import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command

from core.models import ApiKey
from inventory.models import Product, StockLevel, StockMovement
from tests.inventory.factories import default_vendor

pytestmark = pytest.mark.django_db


def test_check_ledger_passes_when_levels_match(stocked):
    stocked(5)
    out = io.StringIO()
    call_command("check_ledger", stdout=out)
    assert out.getvalue().strip() == "OK: 1 levels match their 1 movements"


def test_check_ledger_fails_and_lists_each_mismatch(stocked):
    product = stocked(5)
    stocked(3)
    # A write that bypassed the services (what the check exists to catch).
    StockLevel.objects.filter(product=product).update(on_hand=Decimal(9))
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("check_ledger", stdout=out, stderr=err)

    assert exited.value.code == 1
    assert f"{product.sku}@MAIN: on_hand 9.000 vs ledger 5.000" in out.getvalue()
    assert "1 of 2 levels" in err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_demo_runs_every_step_and_leaves_a_consistent_ledger():
    default_vendor()
    out = io.StringIO()

    call_command("demo", "--products", "50", "--operations", "400", stdout=out)

    text = out.getvalue()
    assert "Catalogue: 2 warehouses, 50 products in 10 variant groups (50 new)" in text
    assert "Ledger check: OK: 100 levels match" in text
    delivered = int(re.search(r"Alerts: (\d+) delivered to the Slack sandbox", text).group(1))
    assert delivered >= 1  # low-stock alerts went out after their commits
    assert Product.objects.count() == 50
    assert StockMovement.objects.filter(kind="reserve").exists()
    assert ApiKey.objects.filter(name="demo", revoked_at__isnull=True).count() == 1
    # A second run reuses the catalogue and replaces the demo key.
    call_command("demo", "--products", "50", "--operations", "50", stdout=io.StringIO())
    assert Product.objects.count() == 50
    assert ApiKey.objects.filter(name="demo", revoked_at__isnull=True).count() == 1
