"""Demo steps of the inventory: a catalogue with variants, opening stock, a stream of stock
operations through the services (as the API and order flows call them), and the ledger
check."""

import random
import time
from datetime import timedelta
from decimal import Decimal
from io import StringIO

from django.core.management import call_command
from django.db import transaction
from django.db.models import Count, Sum

from core.demo import DemoContext, demo_step
from core.errors import DomainError
from inventory import selectors, services
from inventory.errors import InsufficientStock
from inventory.models import Product, Reservation, StockLevel, StockMovement, Warehouse

COLOURS = ["black", "white", "navy", "red", "green", "grey", "sand", "olive"]
SIZES = ["XS", "S", "M", "L", "XL"]
ORIGIN = services.Origin(source="demo", actor="system:demo")


@demo_step(100, "Catalogue")
def seed_catalogue(ctx: DemoContext) -> str:
    vendor = selectors.vendor_default()
    warehouses = {}
    for code, name, default in (("MAIN", "Main warehouse", True), ("STORE", "City store", False)):
        warehouse = Warehouse.objects.filter(vendor=vendor, code=code).first()
        if warehouse is None:
            warehouse = services.warehouse_create(
                vendor=vendor, code=code, name=name, is_default=default, is_main=default
            )
        warehouses[code] = warehouse
    ctx.facts["warehouses"] = warehouses
    count = ctx.options["products"]
    groups = max(1, count // len(SIZES))
    rows = []
    for index in range(count):
        group, size = divmod(index, len(SIZES))
        colour = COLOURS[group % len(COLOURS)]
        price = Decimal(9 + group % 40) + Decimal("0.90")
        rows.append(
            {
                "sku": f"TEE-{group:04d}-{(size and SIZES[size]) or SIZES[0]}",
                "name": f"T-shirt {group:04d} {colour} {SIZES[size]}",
                "variant_group": f"TEE-{group:04d}",
                "attributes": {"size": SIZES[size], "colour": colour},
                "unit_code": "PCE",
                "vat_code": "VAT11",
                "price_excl_vat": price,
                "price_incl_vat": (price * Decimal("1.11")).quantize(Decimal("0.01")),
            }
        )
    created = services.products_bulk_create(vendor=vendor, rows=rows)
    total = Product.objects.filter(vendor=vendor).count()
    return (
        f"{len(warehouses)} warehouses, {total:,} products in {groups:,} variant groups "
        f"({created:,} new)"
    )


@demo_step(110, "Opening stock")
def opening_stock(ctx: DemoContext) -> str:
    rng = random.Random(ctx.options["seed"])
    warehouses = ctx.facts["warehouses"]
    products = list(Product.objects.filter(vendor=warehouses["MAIN"].vendor).order_by("pk"))
    ctx.facts["products"] = products
    counted = 0
    # One transaction for the whole stocktake: the services nest inside it.
    with transaction.atomic():
        for product in ctx.progress(products, total=len(products), label="products"):
            for code, high in (("MAIN", 40), ("STORE", 12)):
                services.stock_set(
                    product=product,
                    warehouse=warehouses[code],
                    quantity=Decimal(rng.randint(0, high)),
                    unit_cost=Decimal("4.20"),
                    origin=ORIGIN,
                    idempotency_key="",
                )
                counted += 1
    # The best sellers take most orders and have a minimum in MAIN: falling below it
    # raises a Slack alert.
    best_sellers = products[: max(10, len(products) // 20)]
    ctx.facts["best_sellers"] = best_sellers
    StockLevel.objects.filter(product__in=best_sellers, warehouse=warehouses["MAIN"]).update(
        min_stock=Decimal(5)
    )
    return (
        f"{counted:,} levels counted; minimum stock of 5 on the {len(best_sellers):,} "
        "best sellers in MAIN"
    )


@demo_step(120, "Stream of operations")
def stream(ctx: DemoContext) -> str:
    rng = random.Random(ctx.options["seed"] + 1)
    warehouses = ctx.facts["warehouses"]
    products = ctx.facts["products"]
    hot = ctx.facts["best_sellers"]  # they get most orders
    active: list[Reservation] = []
    done = {"reserve": 0, "refused": 0, "commit": 0, "release": 0, "adjust": 0, "transfer": 0}
    total = ctx.options["operations"]
    started = time.perf_counter()
    for _ in ctx.progress(range(total), total=total, label="operations"):
        roll = rng.random()
        product = rng.choice(hot) if rng.random() < 0.6 else rng.choice(products)
        try:
            if roll < 0.40 or not active:
                ttl = timedelta(seconds=1) if rng.random() < 0.1 else timedelta(minutes=30)
                active.append(
                    services.stock_reserve(
                        product=product,
                        warehouse=warehouses["MAIN"],
                        quantity=Decimal(rng.randint(1, 3)),
                        ttl=ttl,
                        origin=ORIGIN,
                    )
                )
                done["reserve"] += 1
            elif roll < 0.60:
                services.stock_commit(
                    reservation=active.pop(rng.randrange(len(active))), origin=ORIGIN
                )
                done["commit"] += 1
            elif roll < 0.75:
                services.stock_release(
                    reservation=active.pop(rng.randrange(len(active))), origin=ORIGIN
                )
                done["release"] += 1
            elif roll < 0.90:
                services.stock_adjust(
                    product=product,
                    warehouse=warehouses[rng.choice(["MAIN", "STORE"])],
                    delta=Decimal(rng.choice([-2, -1, 5, 10, 20])),
                    origin=ORIGIN,
                )
                done["adjust"] += 1
            else:
                source, target = rng.sample(["MAIN", "STORE"], 2)
                services.stock_transfer(
                    product=product,
                    from_warehouse=warehouses[source],
                    to_warehouse=warehouses[target],
                    quantity=Decimal(rng.randint(1, 4)),
                    origin=ORIGIN,
                )
                done["transfer"] += 1
        except InsufficientStock:
            done["refused"] += 1
        except DomainError:  # a reservation that expired or closed meanwhile
            done["refused"] += 1
    elapsed = time.perf_counter() - started
    time.sleep(1.1)  # let the 1-second reservations fall due
    expired = services.reservations_expire()
    ctx.facts["sample_sku"] = hot[0].sku
    return (
        f"{total:,} operations at {total / elapsed:,.0f}/s: reserve {done['reserve']:,}, "
        f"commit {done['commit']:,}, release {done['release']:,}, adjust {done['adjust']:,}, "
        f"transfer {done['transfer']:,}; {done['refused']:,} refused for lack of stock; "
        f"{expired:,} reservations expired"
    )


@demo_step(200, "Ledger check")
def ledger_check(ctx: DemoContext) -> str:
    out = StringIO()
    call_command("check_ledger", stdout=out)
    return out.getvalue().strip()


@demo_step(210, "Where the stock stands")
def stock_report(ctx: DemoContext) -> str:
    kinds = dict(StockMovement.objects.values_list("kind").annotate(n=Count("id")).order_by("kind"))
    statuses = dict(
        Reservation.objects.values_list("status").annotate(n=Count("id")).order_by("status")
    )
    ctx.say("  movements by kind: " + ", ".join(f"{k} {n:,}" for k, n in kinds.items()))
    ctx.say("  reservations: " + ", ".join(f"{s} {n:,}" for s, n in statuses.items()))
    totals = StockLevel.objects.aggregate(on_hand=Sum("on_hand"), reserved=Sum("reserved"))
    # SQLite sums decimals as floats: show them at the ledger's precision.
    on_hand, reserved = (Decimal(str(totals[k] or 0)).quantize(Decimal("0.001")) for k in totals)
    ctx.say(f"  totals: on hand {on_hand:,}, reserved {reserved:,}")
    ctx.say(f"  {'SKU':<14} {'warehouse':<9} {'on hand':>9} {'reserved':>9} {'available':>9}")
    busiest = (
        StockLevel.objects.annotate(moves=Count("movements"))
        .select_related("product", "warehouse")
        .order_by("-moves", "pk")[:6]
    )
    for level in busiest:
        ctx.say(
            f"  {level.product.sku:<14} {level.warehouse.code:<9} {level.on_hand:>9} "
            f"{level.reserved:>9} {level.available:>9}"
        )
    below = selectors.stock_levels_below_min_count()
    return f"{below:,} levels below their minimum"
