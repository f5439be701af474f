"""Validators shared by the apps' inputs."""

import unicodedata
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError


def http_url_validate(value: str) -> None:
    """Accept an http(s) URL with a host, including single-label on-premise hosts.

    Django's URLValidator wants a dotted domain, but an ERP, its agent or a sandbox often
    lives at `http://sage01:8080` on the merchant's network.
    """
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValidationError("Enter a valid http(s) URL.", code="invalid") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
        or (port is not None and not 0 < port < 65536)
    ):
        raise ValidationError("Enter a valid http(s) URL.", code="invalid")


# Control (Cc), format (Cf: zero-width spaces and joiners, bidi overrides, BOM), surrogate
# (Cs) and line or paragraph separator (Zl, Zp) characters.
_SKU_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SKU_INVALID_MESSAGE = (
    'A SKU cannot contain "/", control, zero-width or bidi-override characters, nor be "." or "..".'
)


def sku_is_valid(value: str) -> bool:
    """Whether a SKU can be stored and reached again at `/api/v1/products/{sku}/`.

    A `/` ends the path segment, `.` and `..` are path segments that clients resolve away,
    control characters cannot travel in a URL, and invisible format characters (zero-width,
    bidi overrides) make two SKUs that look the same differ.
    """
    if "/" in value or value in {".", ".."}:
        return False
    return not any(unicodedata.category(c) in _SKU_REFUSED_CATEGORIES for c in value)


def sku_validate(value: str) -> None:
    """Refuse a SKU `sku_is_valid` refuses (code `invalid_sku`); every way a SKU is made uses it."""
    if not sku_is_valid(value):
        raise ValidationError(SKU_INVALID_MESSAGE, code="invalid_sku")
