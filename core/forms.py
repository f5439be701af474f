"""Admin form pieces shared by the apps: staff input held to the API's rules."""

import json
from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput
from rest_framework.exceptions import ParseError
from rest_framework.exceptions import ValidationError as DRFValidationError

from core.parsers import MAX_JSON_DEPTH, json_document_check


def _too_deep() -> forms.ValidationError:
    return forms.ValidationError(
        f"Nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
    )


def json_text_load(text: str) -> Any:
    """Parse JSON typed in the admin, held to the API's limits (`core.parsers`).

    Raises a form `ValidationError` for malformed JSON, nesting deeper than
    `MAX_JSON_DEPTH`, NUL characters and lone surrogates, which would otherwise reach the
    decoder's recursion limit or the database.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc}", code="invalid_json") from None
    json_value_check(value)
    return value


def json_value_check(value: Any) -> None:
    """Refuse a JSON value the API would refuse (depth, NUL, lone surrogates)."""
    try:
        json_document_check(value)
    except ParseError as exc:
        raise forms.ValidationError(str(exc.detail), code="invalid_json") from None
    except DRFValidationError as exc:
        ((where, messages),) = exc.detail.items()
        raise forms.ValidationError(f"{where}: {messages[0]}", code="invalid") from None


class JSONFormField(forms.JSONField):
    """Django's JSON form field, held to the API's limits (see `json_text_load`)."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip() and not self.disabled:
            try:
                return super().to_python(value)
            except RecursionError:
                raise _too_deep() from None
        return super().to_python(value)

    def validate(self, value: Any) -> None:
        super().validate(value)
        json_value_check(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        # A refused form shows the text as typed: decoding it again would recurse as deep, or
        # put a lone surrogate on the page, which cannot be sent.
        try:
            value = super().bound_data(data, initial)
            if not isinstance(value, InvalidJSONInput):
                json_value_check(value)
        except (RecursionError, forms.ValidationError):
            return InvalidJSONInput(data)
        return value
