"""A custom REST shop's orders: the list of updated orders and each order's detail, read
with the channel's `options.orders` (see the package docstring)."""

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from channels_sync.adapters.base import (
    ANSWER_ID_MAX,
    ANSWER_SKU_MAX,
    AdapterError,
    MarketOrder,
    MarketOrderLine,
    OrderRef,
    Outcome,
    answer_money,
    answer_name,
    answer_quantity,
    answer_text,
)
from channels_sync.adapters.rest.answers import moment
from channels_sync.adapters.rest.paths import (
    AnswerPath,
    AnswerUnreadable,
    path_parse,
    path_rows,
    path_value,
    template_fill,
    text_fill,
)
from core.http import OutboundError

if TYPE_CHECKING:
    from channels_sync.adapters.rest.adapter import RestAdapter

# A guard against a list that never ends (a shop repeating its last page).
PAGES_MAX = 1000
LINE_FIELDS = ("sku", "quantity", "line_id", "price", "name")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def orders_updated(adapter: "RestAdapter", *, since: datetime, until: datetime) -> list[OrderRef]:
    """Every order the list names for [since, until), through its pages: by `{{page}}`
    (1, 2, ... until an empty page), by `{{cursor}}` (until the cursor path is empty), or one
    call when the list names neither. Raises `AdapterError`."""
    conf = adapter.conf["orders"]["list"]
    paths = {
        n: path_parse(conf[n], where=f"options.orders.list.{n}")
        for n in ("id", "status", "updated_at", "cursor")
        if n in conf
    }
    templates = [*(conf.get("query") or {}).values(), str(conf.get("body") or "")]
    by_page = any("page" in t for t in templates)
    by_cursor = any("cursor" in t for t in templates)
    values: dict[str, Any] = {
        "since": _iso(since),
        "until": _iso(until),
        "since_unix": math.floor(since.timestamp()),
        "until_unix": math.ceil(until.timestamp()),
        "page": 1,
        "cursor": "",
    }
    refs: dict[str, OrderRef] = {}
    cursors: set[str] = set()
    for _ in range(PAGES_MAX):
        answer = _call(adapter, conf, values, paths["id"], "order list")
        rows = _read(lambda a=answer: path_rows(a, paths["id"]), "order list")
        for row in rows:
            external_id = answer_text(_read(lambda r=row: path_value(r, paths["id"]), "order list"))
            if not external_id:
                continue
            status = path_value(row, paths["status"], required=False) if "status" in paths else ""
            updated = (
                path_value(row, paths["updated_at"], required=False)
                if "updated_at" in paths
                else None
            )
            refs[external_id] = OrderRef(
                external_id=external_id, raw_status=answer_text(status), updated_at=moment(updated)
            )
        if by_page:
            if not rows:
                return list(refs.values())
            values["page"] += 1
        elif by_cursor:
            cursor = answer_text(path_value(answer, paths["cursor"], required=False), limit=1000)
            if not cursor or not rows:
                return list(refs.values())
            if cursor in cursors:
                raise AdapterError(
                    "order list: the same cursor came back twice", outcome=Outcome.RETRYABLE
                )
            cursors.add(cursor)
            values["cursor"] = cursor
        else:
            return list(refs.values())
    raise AdapterError(f"order list had more than {PAGES_MAX} pages", outcome=Outcome.RETRYABLE)


def orders_fetch(adapter: "RestAdapter", external_ids: Sequence[str]) -> list[MarketOrder]:
    """The detail of each order (one call each); a 404 or an order without readable lines
    is left out (fetched again later). Raises `AdapterError`."""
    conf = adapter.conf["orders"]["fetch"]
    paths = {
        n: path_parse(conf[n], where=f"options.orders.fetch.{n}")
        for n in conf
        if n not in ("method", "path", "query")
    }
    orders = []
    for external_id in dict.fromkeys(str(i) for i in external_ids if str(i).strip()):
        answer = _call(adapter, conf, {"order_id": external_id}, paths["id"], "order detail")
        if answer is None:
            continue
        order = _order(adapter, answer, paths)
        if order is not None:
            orders.append(order)
    return orders


def _order(adapter: "RestAdapter", answer: Any, paths: dict[str, AnswerPath]) -> MarketOrder | None:
    def one(name: str) -> Any:
        return path_value(answer, paths[name], required=False) if name in paths else None

    external_id = answer_text(one("id"))
    raw_status = answer_text(one("status"))
    if not external_id:
        return None
    try:
        rows = path_rows(answer, paths["sku"])
    except AnswerUnreadable:
        return None
    lines = []
    for index, row in enumerate(rows):
        values = {n: path_value(row, paths[n], required=False) for n in LINE_FIELDS if n in paths}
        sku = answer_text(values.get("sku"), limit=ANSWER_SKU_MAX)
        quantity = answer_quantity(values.get("quantity"))
        if not sku or quantity is None:
            return None  # half an order would hold half its stock: take it later
        lines.append(
            MarketOrderLine(
                line_key=answer_text(values.get("line_id")) or f"{sku}:{index}"[:100],
                sku=sku,
                keys={"sku": sku} if len(sku) <= ANSWER_ID_MAX else {},
                quantity=quantity,
                unit_price=answer_money(values.get("price")),
                name=answer_name(values.get("name"), limit=255),
            )
        )
    if not lines:
        return None
    return MarketOrder(
        external_id=external_id,
        raw_status=raw_status,
        status=adapter.status_of(raw_status),
        lines=tuple(lines),
        placed_at=moment(one("placed_at")),
        paid_at=moment(one("paid_at")),
        updated_at=moment(one("updated_at")),
        order_number=answer_text(one("number")),
        amount=answer_money(one("amount")),
        currency=answer_text(one("currency"), limit=3),
        raw=answer if isinstance(answer, dict) else {},
    )


def _call(
    adapter: "RestAdapter",
    conf: dict[str, Any],
    values: dict[str, Any],
    path: AnswerPath,
    what: str,
) -> Any:
    """One order call's JSON answer (None: 404 for a detail). Raises `AdapterError`."""
    query = {name: text_fill(t, values) for name, t in (conf.get("query") or {}).items()}
    body = template_fill(conf["body"], values) if "body" in conf else None
    url_path = text_fill(conf["path"], values, lambda v: quote(v, safe=""))
    try:
        response, _ = adapter.call(conf["method"], url_path, body=body, query=query)
    except OutboundError as exc:
        raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
    if response.status_code == 404 and what == "order detail":
        return None
    if adapter.outcome_of(response.status_code) is not None:
        raise adapter.failed(response, what)
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise AdapterError(
            f"{what}: answer path `{path.text}`: the answer is not JSON", outcome=Outcome.RETRYABLE
        ) from None


def _read(reader: Any, what: str) -> Any:
    try:
        return reader()
    except AnswerUnreadable as exc:
        raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
