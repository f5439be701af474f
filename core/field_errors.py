"""A service's refusal shown on the field at fault, in the API and in the admin.

Services own the business rules: they raise `DomainError` with `details["field"]` naming the
argument at fault. The edges do not repeat the rules; they run the service (or its check)
inside `service_errors()`:

- in an API view, the error keeps its stable code and status and gains the message under
  the field's name in `details` (`{"field": "batch_size", "batch_size": ["..."], ...}`), the
  layout a `validation_error` uses, so clients read both the same way;
- in an admin form, the message becomes the field's error (or a form error when the field
  is not on the form).

`fields` renames a service's argument to the edge's name for it (`{"sku": "product"}`).
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from django import forms

from core.errors import DomainError


def error_field(exc: DomainError, fields: Mapping[str, str] | None = None) -> str | None:
    """The edge's name of the field a domain error names, or None."""
    name = exc.details.get("field")
    if not isinstance(name, str) or not name:
        return None
    return (fields or {}).get(name, name)


@contextmanager
def service_errors(
    *, form: forms.BaseForm | None = None, fields: Mapping[str, str] | None = None
) -> Iterator[None]:
    """Turn a `DomainError` raised inside into the edge's field error (see the module)."""
    try:
        yield
    except DomainError as exc:
        name = error_field(exc, fields)
        if form is None:
            if name:
                exc.details = {**exc.details, "field": name, name: [exc.message]}
            raise
        form.add_error(name if name in form.fields else None, exc.message)
