"""Small helpers the Amazon sandbox's routes share."""

from datetime import UTC, datetime

from core.sandbox import SandboxRequest


def header(request: SandboxRequest, name: str) -> str:
    """A request header by name, any case ('' when absent)."""
    lowered = name.lower()
    for key, value in request.headers.items():
        if key.lower() == lowered:
            return value
    return ""


def iso(epoch: float) -> str:
    """Unix seconds as the ISO 8601 UTC text SP-API answers carry (`2024-01-01T00:00:00Z`)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire_path(path: str) -> str:
    """A request path as sent: the WSGI server decodes percent escapes as Latin-1, so UTF-8
    characters are put back together here."""
    try:
        return path.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path
