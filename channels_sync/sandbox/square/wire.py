"""The fake Square's own reading and writing of the wire format (never the adapter's)."""

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

from core.sandbox import SandboxRequest, SandboxResponse

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
)


def error_answer(
    status: int, category: str, code: str, detail: str, field: str = ""
) -> SandboxResponse:
    """A Square error answer: `{"errors": [{category, code, detail[, field]}]}`."""
    return SandboxResponse.json(status, {"errors": [field_error(code, detail, field, category)]})


def field_error(
    code: str, detail: str, field: str = "", category: str = "INVALID_REQUEST_ERROR"
) -> dict[str, str]:
    error = {"category": category, "code": code, "detail": detail}
    if field:
        error["field"] = field
    return error


def epoch(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 string (offset required; up to 9 fraction digits)."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    offset = 0
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return moment.timestamp() - offset + (float(fraction) if fraction else 0.0)


def iso(epoch_seconds: float) -> str:
    """Epoch seconds as Square writes times: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def header(request: SandboxRequest, name: str) -> str:
    lowered = name.lower()
    for key, value in request.headers.items():
        if key.lower() == lowered:
            return value
    return ""


def cursor_make(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def cursor_offset(cursor: Any) -> int | None:
    """The offset a cursor names (0 for none); None for one this sandbox never gave."""
    if cursor in (None, ""):
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(cursor).encode()))["o"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None
