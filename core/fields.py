"""Model fields whose values are stored encrypted (see `core.crypto`).

Values come back wrapped in `core.secrets` marker types, so they are redacted from logs
wherever they travel. Encrypted columns cannot be searched: only `isnull` lookups work.
"""

import json
from typing import Any

from django.db import models

from core.crypto import keyring
from core.secrets import mark_secret, unmark_secret


class EncryptedFieldMixin:
    """Encrypt on the way to the database, decrypt on the way back."""

    encrypted = True

    def encode_value(self, value: Any) -> str:
        raise NotImplementedError

    def decode_value(self, text: str) -> Any:
        raise NotImplementedError

    def get_internal_type(self) -> str:
        return "TextField"

    def from_db_value(self, value: str | None, _expression: Any, _connection: Any) -> Any:
        if value is None:
            return None
        return mark_secret(self.decode_value(keyring().decrypt(value).decode("utf-8")))

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return keyring().encrypt(self.encode_value(unmark_secret(value)).encode("utf-8"))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)

    def value_to_string(self, obj: models.Model) -> str:
        return "[encrypted]"


class EncryptedTextField(EncryptedFieldMixin, models.TextField):
    """A text value (token, password, URL with a secret) stored encrypted."""

    def encode_value(self, value: Any) -> str:
        return str(value)

    def decode_value(self, text: str) -> str:
        return text


class EncryptedJSONField(EncryptedFieldMixin, models.TextField):
    """A JSON document (a credentials object) stored encrypted."""

    def encode_value(self, value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def decode_value(self, text: str) -> Any:
        return json.loads(text)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


def encrypted_fields(model: type[models.Model]) -> list[models.Field]:
    """Return the concrete encrypted fields of a model."""
    return [field for field in model._meta.concrete_fields if getattr(field, "encrypted", False)]
