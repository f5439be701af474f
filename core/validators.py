"""Validators shared by the apps' inputs."""

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
