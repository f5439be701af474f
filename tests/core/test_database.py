"""The PostgreSQL connection prepares the statements it repeats."""

import pytest
from django.db import connection

from inventory.models import Product

pytestmark = pytest.mark.django_db


def test_database_repeated_statements_are_prepared_on_the_server():
    # given: a statement the connection runs more often than the prepare threshold
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert threshold

    # when
    for _ in range(threshold + 2):
        list(Product.objects.filter(sku="PREPARED-PROBE"))

    # then: PostgreSQL holds it as a prepared statement of this session
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any('"inventory_product"' in statement for statement in statements), statements
