"""Query filters of every list endpoint: a strict FilterSet base and the filter backend.

django-filter leaves a value it cannot read unfiltered: `?active=maybe` lists everything,
which a client reads as an answer. Here every value a filter cannot read answers 400
`invalid_filter` in the error shape, with the parameter named in `details`.
"""

from datetime import UTC, datetime

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend

from core.errors import DomainError

TRUE_VALUES = frozenset({"true", "1"})
FALSE_VALUES = frozenset({"false", "0"})


class InvalidFilter(DomainError):
    code = "invalid_filter"
    message = "A query parameter has a value that cannot be used."


def invalid_filter(errors: dict[str, list[str]]) -> InvalidFilter:
    name, messages = next(iter(errors.items()))
    return InvalidFilter(f"Invalid query parameter {name}: {messages[0]}", details=errors)


class StrictBooleanField(forms.Field):
    """`true`/`false` (or `1`/`0`, any case); anything else is an error, not "no filter"."""

    def to_python(self, value: object) -> bool | None:
        if value in self.empty_values:
            return None
        text = str(value).strip().lower()
        if text in TRUE_VALUES:
            return True
        if text in FALSE_VALUES:
            return False
        raise forms.ValidationError("Must be true or false.", code="invalid")


class BooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, handed on in UTC.

    PostgreSQL refuses offsets beyond +-15:59 that ISO 8601 allows (`+23:27`); in UTC every
    readable instant is one it stores, and one that falls outside the years 1-9999 is an error.
    """

    def to_python(self, value: object) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError(
                "Must be a date-time within the years 1 to 9999.", code="invalid"
            ) from exc


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class FilterSet(django_filters.FilterSet):
    """The base of every API FilterSet: booleans are strict and typed values cannot be empty."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.BooleanField: {"filter_class": BooleanFilter},
    }

    def is_valid(self) -> bool:
        form = self.form
        form.errors  # noqa: B018 - runs the form's validation before empty values are added
        for name, filter_ in self.filters.items():
            # Free text may be empty; an empty id, flag, choice or date is a client bug.
            if isinstance(filter_, django_filters.CharFilter) or name not in self.data:
                continue
            if str(self.data.get(name, "")).strip() == "" and name not in form.errors:
                form.add_error(name, "Must not be empty.")
        return self.is_bound and form.is_valid()


class FilterBackend(DjangoFilterBackend):
    """django-filter's backend on the strict base; an unreadable value answers 400."""

    filterset_base = FilterSet

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            raise invalid_filter(
                {
                    name: [str(message) for message in messages]
                    for name, messages in filterset.errors.items()
                }
            )
        return filterset.qs
