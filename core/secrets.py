"""Marker types for values that must never reach a log line.

Encrypted model fields hand back their plaintext wrapped in these types; the log redaction
processor (`core.logging.redact_secrets`) replaces any of them with a fixed mask, however
deeply it is nested in an event. They behave as the plain `str`, `dict` and `list` they
extend, so callers use them as usual; only `repr()` and the logs hide them.
"""

from typing import Any


class Secret:
    """Mixin marking a value as secret."""

    __slots__ = ()


class SecretStr(Secret, str):
    def __repr__(self) -> str:
        return "SecretStr('***')"


class SecretDict(Secret, dict):
    def __repr__(self) -> str:
        return "SecretDict(***)"


class SecretList(Secret, list):
    def __repr__(self) -> str:
        return "SecretList(***)"


def mark_secret(value: Any) -> Any:
    """Wrap a decoded value so that it, and every string inside it, is marked secret."""
    if value is None or isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict):
        return SecretDict({key: mark_secret(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return SecretList(mark_secret(item) for item in value)
    return value


def unmark_secret(value: Any) -> Any:
    """Return plain builtin types (for serialising before encryption)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(key): unmark_secret(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unmark_secret(item) for item in value]
    return value
