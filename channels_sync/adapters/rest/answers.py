"""Reading a custom REST shop's answers and webhooks: per-item failures by the answer
paths, times, and the webhook body."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from channels_sync.adapters.base import (
    ChannelEvent,
    StockReport,
    StockUpdate,
    answer_int,
    answer_name,
    answer_text,
    stock_observed,
    unreadable,
)
from channels_sync.adapters.rest.paths import (
    AnswerPath,
    AnswerUnreadable,
    path_parse,
    path_rows,
    path_value,
)

ORDER_TYPES = frozenset({"order.created", "order.updated"})
STOCK_TYPES = frozenset({"stock.updated"})


def item_failures(
    stock: dict[str, Any], response: Any, updates: Sequence[StockUpdate]
) -> dict[int, str]:
    """Index of each failed update -> its error, read with the answer paths."""
    paths = {n: path_parse(stock[n], where=n) for n in ("ok", "error", "sku") if n in stock}
    if not paths:
        return {}  # no answer paths: a 2xx applies every item
    answer = json_answer(response, next(iter(paths.values())))
    whole = {n: p for n, p in paths.items() if not p.has_rows}
    rowed = {n: p for n, p in paths.items() if p.has_rows}
    failures: dict[int, str] = {}
    whole_error = row_failure(answer, whole, stock.get("ok_value", True))
    if whole_error is not None:
        return dict.fromkeys(range(len(updates)), whole_error)
    if not rowed:
        return failures
    first = next(iter(rowed.values()))
    rows = path_rows(answer, first)
    if "sku" in rowed:
        by_sku: dict[str, list[Any]] = {}
        for row in rows:
            sku = answer_text(path_value(row, rowed["sku"]), limit=200)
            by_sku.setdefault(sku, []).append(row)
        matched = []
        for update in updates:
            candidates = by_sku.get(str(update.keys.get("sku")), [])
            if not candidates:
                raise AnswerUnreadable(
                    f"answer path `{rowed['sku'].text}`: no row for SKU "
                    f"{str(update.keys.get('sku'))[:60]}"
                )
            matched.append(candidates.pop(0))
    else:
        if len(rows) != len(updates):
            raise AnswerUnreadable(
                f"answer path `{first.text}`: {len(rows)} rows for {len(updates)} items"
            )
        matched = rows
    for index, row in enumerate(matched):
        error = row_failure(row, rowed, stock.get("ok_value", True))
        if error is not None:
            failures[index] = error
    return failures


def event_parse(body: bytes, *, orders: bool) -> ChannelEvent:
    """A webhook body `{"id", "type", "created", "data"}` read (see the package docstring);
    order events are read only when the channel has `orders` configured (`orders`)."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return unreadable(body)
    if not isinstance(envelope, dict):
        return unreadable(body)
    key = answer_text(envelope.get("id"))
    kind = answer_text(envelope.get("type"))
    data = envelope.get("data")
    if not key or not isinstance(data, dict):
        return unreadable(body)
    created = moment(envelope.get("created"))
    if kind in ORDER_TYPES and orders:
        order_id = answer_text(data.get("order_id"))
        if not order_id:
            return unreadable(body)
        return ChannelEvent(
            topic="order",
            event_key=key,
            order_id=order_id,
            status=answer_text(data.get("status")),
            updated_at=moment(data.get("updated_at")) or created,
        )
    if kind in STOCK_TYPES:
        reports = []
        for row in data.get("items") if isinstance(data.get("items"), list) else []:
            sku = answer_text(row.get("sku")) if isinstance(row, dict) else ""
            if not sku:
                continue
            keys = {"sku": sku}
            if answer_text(row.get("location")):
                keys["location"] = answer_text(row["location"])
            quantity = stock_observed(
                answer_int(row.get("quantity")), channel_type="rest", keys=keys
            )
            reports.append(StockReport(keys=keys, quantity=quantity))
        if not reports:
            return unreadable(body)
        return ChannelEvent(
            topic="stock",
            event_key=key,
            updated_at=moment(data.get("updated_at")) or created,
            stock=tuple(reports[:500]),
        )
    return ChannelEvent(topic="other", event_key=key)


# --- orders -------------------------------------------------------------------------------


def json_answer(response: Any, path: AnswerPath) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise AnswerUnreadable(f"answer path `{path.text}`: the answer is not JSON") from None


def row_failure(row: Any, paths: dict[str, AnswerPath], ok_value: Any) -> str | None:
    """The error of one answer row (or whole answer) by its `ok` and `error` paths; None when
    it succeeded. `ok` must be present; an absent or empty `error` is no error."""
    error = path_value(row, paths["error"], required=False) if "error" in paths else None
    text = answer_name(error, limit=500) if error not in (None, "", False) else ""
    if "ok" in paths:
        value = path_value(row, paths["ok"])
        if value == ok_value and type(value) is type(ok_value):
            return None
        return text or f"refused ({paths['ok'].text} = {json.dumps(value)[:60]})"
    return text or None


def moment(value: Any) -> datetime | None:
    """An aware datetime from Unix seconds or an ISO-8601 text; None otherwise."""
    seconds = answer_int(value)
    if seconds is not None:
        try:
            return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else None
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            return None
        if parsed is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    return None
