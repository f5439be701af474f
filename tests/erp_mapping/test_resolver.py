"""The mapping resolver's in-process cache: cleared by every mapping service, LRU, TTL."""

import time
from dataclasses import replace

import pytest
from django.db import transaction

from erp_mapping import selectors
from erp_mapping.models import ErpCodeMapping
from erp_mapping.selectors import (
    _MISSING,
    _LruCache,
    mapping_cache_clear,
    mapping_resolve,
    mapping_resolve_many,
)
from erp_mapping.services.mappings import (
    MappingInput,
    mapping_create,
    mapping_update,
    mappings_seed,
    mappings_set_active,
)
from tests.erp_mapping.factories import ErpCodeMappingFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_resolver_cache():
    mapping_cache_clear()
    yield
    mapping_cache_clear()


def test_resolver_sees_a_change_made_through_mapping_update(
    vendor, django_capture_on_commit_callbacks
):
    mapping = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", resto_code="unit_kg")
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"
    # A write that bypasses the services is not seen: the answer is cached.
    ErpCodeMapping.objects.filter(pk=mapping.pk).update(resto_code="unit_bypass")
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        mapping_update(
            mapping=mapping,
            resto_code="unit_kilo",
            resto_label=mapping.resto_label,
            is_active=True,
            actor="test",
        )

    assert len(callbacks) == 1
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kilo"


def test_resolver_sees_a_deactivation_and_a_seed(vendor, django_capture_on_commit_callbacks):
    mapping = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", resto_code="unit_kg")
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"
    assert mapping_resolve(vendor.pk, "vat", "20") is None  # a miss, cached too

    with django_capture_on_commit_callbacks(execute=True):
        assert mappings_set_active(ids=[mapping.pk], active=False, actor="test") == 1
    assert mapping_resolve(vendor.pk, "unit", "KG") is None

    with django_capture_on_commit_callbacks(execute=True):
        mappings_seed(
            rows=[MappingInput(0, vendor.pk, "vat", "20", "vat_20", "TVA 20%")], actor="test"
        )
    assert mapping_resolve_many(vendor.pk, "vat", ["20", "7"]) == {"20": "vat_20"}


def test_resolver_sees_a_created_mapping(vendor, django_capture_on_commit_callbacks):
    assert mapping_resolve(vendor.pk, "family", "EPIC") is None

    with django_capture_on_commit_callbacks(execute=True):
        mapping_create(
            vendor=vendor,
            mapping_type="family",
            erp_code="EPIC",
            resto_code="cat_epic",
            resto_label="Epicerie",
            actor="test",
        )

    assert mapping_resolve(vendor.pk, "family", "EPIC") == "cat_epic"


def test_services_that_change_nothing_leave_the_cache(vendor, django_capture_on_commit_callbacks):
    mapping = ErpCodeMappingFactory(vendor=vendor, erp_code="KG")
    row = MappingInput(0, vendor.pk, "unit", "KG", mapping.resto_code, mapping.resto_label, True)

    with django_capture_on_commit_callbacks() as callbacks:
        assert mappings_set_active(ids=[mapping.pk], active=True, actor="test") == 0
        mapping_update(
            mapping=mapping,
            resto_code=mapping.resto_code,
            resto_label=mapping.resto_label,
            is_active=True,
            actor="test",
        )
        assert mappings_seed(rows=[row], actor="test").totals.unchanged == 1
        dry = mappings_seed(rows=[replace(row, resto_label="x")], dry_run=True, actor="test")
        assert dry.totals.updated == 1

    assert callbacks == []


def test_the_module_cache_holds_10000_entries_for_five_minutes():
    assert (selectors._mapping_cache.size, selectors._mapping_cache.ttl) == (10_000, 300.0)


def test_lru_evicts_the_least_recently_used_entry():
    cache = _LruCache(size=2, ttl=60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used

    cache.put("c", 3)

    assert cache.get("b") is _MISSING
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert len(cache) == 2


def test_lru_entries_expire_after_their_ttl():
    cache = _LruCache(size=10, ttl=0.05)
    cache.put("a", None)  # a cached miss
    assert cache.get("a") is None

    time.sleep(0.1)

    assert cache.get("a") is _MISSING
    assert len(cache) == 0


@pytest.mark.django_db
def test_a_resolution_read_before_a_change_is_not_cached_after_it(vendor, monkeypatch):
    mapping = ErpCodeMappingFactory(
        vendor=vendor, mapping_type="unit", erp_code="KG", resto_code="old"
    )
    mapping_cache_clear()
    real_put = selectors._mapping_cache.put

    def put_after_a_concurrent_change(key, value, **kwargs):
        # Another request of this process commits a change between this read's SELECT and
        # its put: the change's clear runs first, then the put of the value read before.
        with transaction.atomic():
            mapping_update(
                mapping=mapping, resto_code="new", resto_label="x", is_active=True, actor="t"
            )
        mapping_cache_clear()  # what the change's on_commit hook does
        real_put(key, value, **kwargs)

    monkeypatch.setattr(selectors._mapping_cache, "put", put_after_a_concurrent_change)
    assert mapping_resolve(vendor.pk, "unit", "KG") == "old"  # the read in flight
    monkeypatch.setattr(selectors._mapping_cache, "put", real_put)

    assert mapping_resolve(vendor.pk, "unit", "KG") == "new"
