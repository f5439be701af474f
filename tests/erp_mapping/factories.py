import factory

from erp_mapping.models import ErpCodeMapping
from tests.inventory.factories import default_vendor


class ErpCodeMappingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ErpCodeMapping

    vendor = factory.LazyFunction(default_vendor)
    mapping_type = ErpCodeMapping.Type.UNIT
    erp_code = factory.Sequence(lambda n: f"U{n}")
    resto_code = factory.LazyAttribute(lambda o: f"{o.mapping_type}_{o.erp_code.lower()}")
    resto_label = factory.LazyAttribute(lambda o: o.erp_code)
