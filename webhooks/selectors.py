"""Reads of webhook events: what the admin shows."""

import json

# The console shows this much of a body: a page must stay a page whatever was sent.
PREVIEW_LIMIT = 64 * 1024


def body_preview(body: bytes | memoryview, *, limit: int = PREVIEW_LIMIT) -> str:
    """A raw body as readable text: pretty JSON when it is JSON, else the text as sent.

    At most `limit` characters (a note says how much more there is). A body nested too
    deeply for the JSON reader (it raises `RecursionError`) is shown as sent.
    """
    raw = bytes(body)
    try:
        text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text = raw.decode("utf-8", "replace")
    return _capped(text, limit)


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit} more characters)"
