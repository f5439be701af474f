import pytest
from django import forms

from core.errors import DomainError
from core.field_errors import service_errors


class _Form(forms.Form):
    product = forms.CharField(required=False)


def _refuse(field: str) -> None:
    raise DomainError("No such product.", code="unknown_sku", details={"field": field, "n": 1})


def test_service_errors_in_the_api_keep_the_code_and_add_the_field():
    with pytest.raises(DomainError) as refused, service_errors(fields={"sku": "product"}):
        _refuse("sku")

    assert refused.value.code == "unknown_sku"
    assert refused.value.details == {"field": "product", "product": ["No such product."], "n": 1}


def test_service_errors_in_a_form_become_the_field_error_or_a_form_error():
    form = _Form(data={})
    assert form.is_valid()

    with service_errors(form=form, fields={"sku": "product"}):
        _refuse("sku")
    with service_errors(form=form):
        _refuse("warehouse")  # not on the form

    assert form.errors == {"product": ["No such product."], "__all__": ["No such product."]}
