import io
import re
from decimal import Decimal

import pytest
from django.core.management import call_command

from core.models import ApiKey
from erp_mapping.models import ErpSyncJob
from inventory.models import Product, StockLevel, StockMovement
from tests.inventory.factories import default_vendor

pytestmark = pytest.mark.django_db

# The demo's channel reconciliation: one conflict resolved by `use_ours`, one left for staff.
RECONCILED = (
    r"Channel reconciliation and conflicts: 2 conflicts: 1 auto-resolved \(pushed ours: "
    r"sandbox back at \d+\), 1 open for manual review  \("
)


def assert_more_channels(text: str) -> None:
    """The step of the five other channel types: pushed through faults, ten orders each."""
    assert re.search(
        r"More channels \(Shopify, Amazon, eBay, Square, custom REST shop\): 5 channels, "
        r"120 listings, 50 orders; channels left with push disabled",
        text,
    ), text
    # the push: every listing at its quantity, the REST shop's locked SKU dead-lettered
    for name in ("Shopify Store", "Amazon US", "eBay US", "Square POS"):
        assert re.search(
            name + r" +pushed  24 in .* dead-lettered 0; sandbox at desired: yes "
            r"\(24/24\)",
            text,
        ), name
    assert re.search(
        r"Own web shop +pushed  23 in .* dead-lettered 1; sandbox at desired: "
        r"yes \(23/23, 1 dead-lettered\)",
        text,
    )
    assert re.search(r"eBay US +pushed  24 in +\d\d calls", text)  # one SKU a call
    # the orders: each notification copied three times leaves two duplicates, the dropped
    # one is found by polling; Amazon's ten come by polling alone
    for name in ("Shopify Store", "eBay US", "Square POS", "Own web shop"):
        assert re.search(
            name + r" +orders  10, .* released +[1-9]; parked 0; duplicates ignored  2; found "
            r"by polling 1 \(poll ok\); sandbox at desired: yes \(24/24\)",
            text,
        ), name
    assert re.search(
        r"Amazon US +orders  10, .* released +[1-9]; parked 0; duplicates ignored  0; found by "
        r"polling 10 \(poll ok\); sandbox at desired: yes \(24/24\)",
        text,
    )


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
    # the default vendor's 100 levels, and the ERP sample vendor's levels from the agent
    levels = int(
        re.search(r"Ledger check: OK: ([\d,]+) levels match", text).group(1).replace(",", "")
    )
    assert levels == 100 + StockLevel.objects.exclude(product__vendor__is_default=True).count()
    assert levels > 100
    delivered = int(re.search(r"Alerts: (\d+) delivered to the Slack sandbox", text).group(1))
    assert delivered >= 1  # low-stock alerts went out after their commits
    assert Product.objects.filter(vendor__is_default=True).count() == 50
    assert "a second run: 102 unchanged, 0 created" in text
    assert re.search(r"Agent ingest .*: the same stock batch again: (\d+) of \1 unchanged", text)
    assert re.search(r"Nightly ERP pull .*: run \d+ completed on attempt 2", text)
    assert re.search(
        r"ERP reconciliation \(five drifted SKUs\): found 5 drifted rows, fixed 5, fetching "
        r"\d+ of \d+ rows; again: 0 drift, 0 rows fetched",
        text,
    )
    assert StockMovement.objects.filter(kind="reconciliation").count() == 5
    assert StockMovement.objects.filter(kind="reserve").exists()
    # every marketplace sandbox ended at the desired quantities, after faults too
    assert "First push to the marketplaces: 200 listings pushed" in text
    # (four marketplaces after three steps, five more channels after their push and orders)
    assert text.count("sandbox at desired: yes") == 12 + 10
    assert "sandbox at desired: NO" not in text
    # orders came back in over webhooks and polling (five dropped notifications in all)
    assert re.search(r"200 orders from 4 marketplaces; 2 parked order\(s\) mapped", text)
    marketplaces = r"(?:Shopee ID|Lazada ID|TikTok Shop|Tokopedia & Shop) +orders"
    polled = re.findall(marketplaces + r".* found by polling (\d+) \(poll ok\)", text)
    assert sum(int(n) for n in polled) == 5
    duplicates = re.findall(marketplaces + r".* duplicates ignored +(\d+)", text)
    assert len(duplicates) == 4
    assert all(int(n) > 0 for n in duplicates)
    assert_more_channels(text)
    assert re.search(r"Tokopedia & Shop .* dead-lettered 1;", text)
    assert re.search(r"Shopee ID .* throttled +[1-9]", text)
    assert re.search(r"Lazada ID .* retried +[1-9]", text)
    # every order reached the ERP once, across the agent's outage
    synced = re.search(
        r"Orders to the ERP .*: (\d+) orders and \d+ cancellations .* in the ERP once: "
        r"(\d+) documents",
        text,
    )
    assert synced is not None, text
    assert synced.group(1) == synced.group(2) == "250"  # 200 + the five channels' 50
    assert "circuit open, " in text
    assert ErpSyncJob.objects.exclude(status="completed").count() == 0
    assert re.search(RECONCILED, text), text
    assert ApiKey.objects.filter(name="demo", revoked_at__isnull=True).count() == 1
    # A second run reuses the catalogue and replaces the demo key.
    again = io.StringIO()
    call_command("demo", "--products", "50", "--operations", "50", stdout=again)
    assert Product.objects.filter(vendor__is_default=True).count() == 50
    # the channels are pointed at the new run's sandboxes and pushed in full again
    assert "First push to the marketplaces: 200 listings pushed" in again.getvalue()
    assert again.getvalue().count("sandbox at desired: yes") == 12 + 10
    assert "200 orders from 4 marketplaces; 2 parked" in again.getvalue()
    assert_more_channels(again.getvalue())
    synced_again = r"250 orders and \d+ cancellations .* in the ERP once: 250 documents"
    assert re.search(synced_again, again.getvalue())
    # the conflict the first run left open for manual review is updated, and still counted
    assert re.search(RECONCILED, again.getvalue()), again.getvalue()
    assert ApiKey.objects.filter(name="demo", revoked_at__isnull=True).count() == 1
