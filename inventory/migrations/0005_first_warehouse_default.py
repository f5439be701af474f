from django.db import migrations


def default_first_warehouses(apps, schema_editor):
    """Give every vendor that has warehouses but no default its first active one."""
    Warehouse = apps.get_model("inventory", "Warehouse")
    with_default = Warehouse.objects.filter(is_default=True).values("vendor_id")
    vendors = (
        Warehouse.objects.filter(active=True)
        .exclude(vendor_id__in=with_default)
        .values_list("vendor_id", flat=True)
        .distinct()
    )
    for vendor_id in list(vendors):
        first = (
            Warehouse.objects.filter(vendor_id=vendor_id, active=True)
            .order_by("created_at", "pk")
            .first()
        )
        Warehouse.objects.filter(pk=first.pk).update(is_default=True)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0004_erp_sync_fields")]

    # Reversing keeps the defaults: they are valid data under the previous schema too.
    operations = [migrations.RunPython(default_first_warehouses, migrations.RunPython.noop)]
