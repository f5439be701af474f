"""Reading a JSON_LISTINGS_FEED's processing report (Feeds API v2021-06-30).

The report ("Feeds API v2021-06-30 use case guide", "Listings Feed Processing Report
Schema") holds `issues[]` (`messageId`, `code`, `severity`, `message`) and a `summary`
(`errors`, `warnings`, `messagesProcessed`, `messagesAccepted`, `messagesInvalid`):

- an `ERROR` issue with a `messageId` refuses that message alone;
- an `ERROR` issue without one (Amazon leaves it out for an error not tied to a message,
  such as a document it could not read) refuses the feed as a whole: nothing of it can be
  taken as applied;
- a summary whose processed or accepted counts fall short of the messages sent says some
  messages were not applied, without naming them: no message without an issue of its own
  can be confirmed then.
"""

import gzip
import io
import json
import zlib
from typing import Any

from channels_sync.adapters.amazon.listings import item_errors
from channels_sync.adapters.base import answer_int, answer_list, answer_text
from core.http import OutboundError

# A processing report bigger than this is not read (25,000 messages with an issue each stay
# far under it). A GZIP report is inflated as a stream up to it, never whole: a few
# kilobytes of gzip can inflate to gigabytes.
REPORT_MAX_BYTES = 64 * 1024 * 1024


class ReportUnreadable(Exception):
    """The report could not be had or read (the feed's outcome is unknown)."""


def report_failures(report: dict[str, Any]) -> dict[int, str]:
    """The messages a processing report refuses: messageId -> its `ERROR` issues."""
    failures: dict[int, list[str]] = {}
    for issue in answer_list(report.get("issues")):
        if not isinstance(issue, dict):
            continue
        message_id = answer_int(issue.get("messageId"))
        errors = item_errors({"issues": [issue]})
        if message_id is not None and errors:
            failures.setdefault(message_id, []).extend(errors)
    return {message_id: "; ".join(errors)[:500] for message_id, errors in failures.items()}


def report_feed_errors(report: dict[str, Any], messages: int) -> list[str]:
    """The `ERROR` issues of the feed as a whole: those without a `messageId`, or naming a
    message the feed did not hold (1..`messages`)."""
    errors = []
    for issue in answer_list(report.get("issues")):
        if not isinstance(issue, dict):
            continue
        message_id = answer_int(issue.get("messageId"))
        if message_id is not None and 1 <= message_id <= messages:
            continue
        errors.extend(item_errors({"issues": [issue]}))
    return errors


def report_shortfall(report: dict[str, Any], messages: int, refused: int) -> str:
    """Why the summary does not account for every message ('' when it does): processed
    fewer than sent, or accepted fewer than the messages without an `ERROR` issue (a
    summary without readable counts confirms nothing either)."""
    summary = report.get("summary") if isinstance(report.get("summary"), dict) else {}
    processed = answer_int(summary.get("messagesProcessed"))
    accepted = answer_int(summary.get("messagesAccepted"))
    if processed is None or accepted is None:
        return "the report's summary has no message counts"
    if processed < messages:
        return f"the report counts {processed} of {messages} messages processed"
    if accepted < messages - refused:
        return (
            f"the report counts {accepted} messages accepted, {messages - refused} "
            "were sent without an issue"
        )
    return ""


def report_download(adapter: Any, located: dict[str, Any]) -> dict[str, Any]:
    """Download the report named by a getFeedDocument answer; its JSON object.

    Raises `ReportUnreadable` (no url, transport failure, a refusal, a body that is not a
    JSON object after gunzip when `compressionAlgorithm` is GZIP, or one too big).
    """
    url = located.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ReportUnreadable("the report has no url")
    try:
        response, _ = adapter._request("GET", url)
    except OutboundError as exc:
        raise ReportUnreadable(str(exc)) from None
    content = response.content
    try:
        if not 200 <= response.status_code < 300:
            raise ValueError(f"HTTP {response.status_code}")
        if answer_text(located.get("compressionAlgorithm")).upper() == "GZIP":
            content = gunzip_limited(content, REPORT_MAX_BYTES)
        if len(content) > REPORT_MAX_BYTES:
            raise ValueError("the report is too big")
        report = json.loads(content)
    except (ValueError, OSError, EOFError, RecursionError, zlib.error) as exc:
        raise ReportUnreadable(f"unreadable: {exc}") from None
    if not isinstance(report, dict):
        raise ReportUnreadable("the report is no object")
    return report


def gunzip_limited(content: bytes, limit: int) -> bytes:
    """The gzip `content` inflated, reading at most `limit` + 1 bytes of it (so a result
    longer than `limit` says "too big" without the rest ever being inflated). Raises what
    `gzip` raises for a damaged stream (`OSError`, `EOFError`, `zlib.error`)."""
    with gzip.GzipFile(fileobj=io.BytesIO(content)) as stream:
        return stream.read(limit + 1)
