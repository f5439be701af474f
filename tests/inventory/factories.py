import factory
from django.utils import timezone

from inventory.models import Product, Vendor, Warehouse


def default_vendor() -> Vendor:
    """The default vendor (made by a migration; made again after a transactional flush)."""
    vendor, _ = Vendor.objects.get_or_create(is_default=True, defaults={"name": "Default vendor"})
    return vendor


class VendorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Vendor

    name = factory.Sequence(lambda n: f"Vendor {n}")


class WarehouseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Warehouse

    vendor = factory.LazyFunction(default_vendor)
    code = factory.Sequence(lambda n: f"WH{n}")
    name = factory.LazyAttribute(lambda o: f"Warehouse {o.code}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    vendor = factory.LazyFunction(default_vendor)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.LazyAttribute(lambda o: f"Product {o.sku}")
    unit_code = "PCE"
    created_at = factory.LazyFunction(timezone.now)
