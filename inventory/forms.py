"""Admin form pieces that hold staff input to the API's rules for SKUs and quantities."""

from decimal import Decimal
from typing import Any

from django import forms

from core.forms import JSONFormField
from core.validators import sku_validate
from inventory.models import Product
from inventory.serializers import QUANTITY_DECIMALS, QUANTITY_MAX_DIGITS, QUANTITY_PATTERN


class QuantityFormField(forms.DecimalField):
    """A quantity typed in the admin, in the API's form (`inventory.serializers.QuantityField`).

    Django's DecimalField would also read `1e3`, `1_000`, `+5` and non-ASCII digits.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", QUANTITY_MAX_DIGITS)
        kwargs.setdefault("decimal_places", QUANTITY_DECIMALS)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> Decimal | None:
        if isinstance(value, str):
            value = value.strip()
            if value and not QUANTITY_PATTERN.fullmatch(value):
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class ProductAdminForm(forms.ModelForm):
    """The product form; a new or changed SKU must be reachable at /products/{sku}/."""

    class Meta:
        model = Product
        # ProductAdmin decides which fields it shows; this form only adds the SKU check.
        fields = "__all__"  # noqa: DJ007
        field_classes = {"attributes": JSONFormField}

    def clean_sku(self) -> str:
        sku = self.cleaned_data["sku"]
        if "sku" in self.changed_data:
            sku_validate(sku)
        return sku
