from django.db import migrations


def create_default_vendor(apps, schema_editor):
    Vendor = apps.get_model("inventory", "Vendor")
    if not Vendor.objects.filter(is_default=True).exists():
        Vendor.objects.create(name="Default vendor", is_default=True)


def remove_default_vendor(apps, schema_editor):
    Vendor = apps.get_model("inventory", "Vendor")
    Vendor.objects.filter(is_default=True, name="Default vendor", products__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial")]

    operations = [migrations.RunPython(create_default_vendor, remove_default_vendor)]
