"""The settings of a custom REST shop (`Channel.options`), checked strictly.

Every refusal is a `ValueError` whose message names the option (`options.stock.path`) and
what is wrong; the channel services turn it into `invalid_options`. See the package's
docstring for what each option means.
"""

import json
import re
from typing import Any

from channels_sync.adapters.base import OrderStatus
from channels_sync.adapters.rest.paths import (
    AnswerPath,
    path_parse,
    template_check,
    text_placeholders,
)

AUTH_MODES = ("bearer", "basic", "api_key", "hmac")
STOCK_METHODS = ("POST", "PUT", "PATCH")
READ_METHODS = ("GET", "POST")
MODES = ("per_item", "batch")
OPTIONS_CHARS_MAX = 50_000
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
# An endpoint path: absolute, URL-safe characters (placeholders aside), no query or fragment.
ENDPOINT = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
ENDPOINT_MAX = 300

# What each template may name.
ITEM_VALUES = frozenset(
    {"sku", "quantity", "location", "variant_id", "expected", "idempotency_key"}
)
ENVELOPE_VALUES = frozenset({"items", "count", "idempotency_key"})
READ_ITEM_VALUES = frozenset({"sku", "location", "variant_id"})
READ_BATCH_VALUES = frozenset({"skus"})
LIST_VALUES = frozenset({"since", "until", "since_unix", "until_unix", "page", "cursor"})
FETCH_VALUES = frozenset({"order_id"})

_SCALAR = (str, int, float, bool, type(None))


def options_check(options: Any) -> dict[str, Any]:
    """The options with their defaults filled in, or `ValueError` (see the module)."""
    if not isinstance(options, dict):
        raise ValueError("options must be an object")
    try:
        size = len(json.dumps(options))
    except (ValueError, TypeError, RecursionError):
        raise ValueError("options must be plain JSON") from None
    if size > OPTIONS_CHARS_MAX:
        raise ValueError(f"options are longer than {OPTIONS_CHARS_MAX} characters of JSON")
    _fields(
        options,
        "options",
        required=("auth", "stock", "read"),
        optional=("api_key_header", "orders"),
    )
    clean: dict[str, Any] = {"auth": _choice(options["auth"], "options.auth", AUTH_MODES)}
    if clean["auth"] == "api_key":
        header = options.get("api_key_header", "X-Api-Key")
        if not isinstance(header, str) or not HEADER_NAME.fullmatch(header):
            raise ValueError(
                "options.api_key_header must be an HTTP header name (letters, digits and -)"
            )
        clean["api_key_header"] = header
    elif "api_key_header" in options:
        raise ValueError("options.api_key_header is only for auth api_key")
    clean["stock"] = _stock(options["stock"])
    clean["read"] = _read(options["read"])
    if options.get("orders") is not None:
        clean["orders"] = _orders(options["orders"])
    return clean


def _stock(value: Any) -> dict[str, Any]:
    where = "options.stock"
    _fields(
        value,
        where,
        required=("path", "body"),
        optional=("method", "mode", "item", "ok", "ok_value", "error", "sku"),
    )
    mode = _choice(value.get("mode", "per_item"), f"{where}.mode", MODES)
    clean = {
        "method": _choice(value.get("method", "POST"), f"{where}.method", STOCK_METHODS),
        "mode": mode,
    }
    if mode == "per_item":
        clean["path"] = _endpoint(value["path"], f"{where}.path", ITEM_VALUES)
        template_check(value["body"], where=f"{where}.body", allowed=ITEM_VALUES)
        if "item" in value:
            raise ValueError(f"{where}.item is only for mode batch (per_item sends body)")
    else:
        clean["path"] = _endpoint(value["path"], f"{where}.path", frozenset({"idempotency_key"}))
        used = template_check(value["body"], where=f"{where}.body", allowed=ENVELOPE_VALUES)
        if "items" not in used:
            raise ValueError(f"{where}.body must hold {{{{items}}}} in mode batch")
        if "item" not in value:
            raise ValueError(f"{where}.item (the template of each item) is required in mode batch")
        template_check(value["item"], where=f"{where}.item", allowed=ITEM_VALUES)
        clean["item"] = value["item"]
    clean["body"] = value["body"]
    paths = {}
    for name in ("ok", "error", "sku"):
        if value.get(name) is not None:
            paths[name] = path_parse(value[name], where=f"{where}.{name}")
            clean[name] = value[name]
    if "sku" in paths and mode == "per_item":
        raise ValueError(f"{where}.sku is only for mode batch (it matches answer rows)")
    _same_rows(paths, where, per_item=mode == "per_item")
    if "ok_value" in value:
        if "ok" not in paths:
            raise ValueError(f"{where}.ok_value needs {where}.ok")
        if not isinstance(value["ok_value"], _SCALAR) or isinstance(value["ok_value"], float):
            raise ValueError(f"{where}.ok_value must be a string, an integer, true, false or null")
        if isinstance(value["ok_value"], str) and len(value["ok_value"]) > 100:
            raise ValueError(f"{where}.ok_value is longer than 100 characters")
        clean["ok_value"] = value["ok_value"]
    return clean


def _read(value: Any) -> dict[str, Any]:
    where = "options.read"
    _fields(
        value,
        where,
        required=("path", "quantity"),
        optional=("method", "mode", "query", "body", "sku", "batch_size"),
    )
    mode = _choice(value.get("mode", "per_item"), f"{where}.mode", MODES)
    method = _choice(value.get("method", "GET"), f"{where}.method", READ_METHODS)
    allowed = READ_ITEM_VALUES if mode == "per_item" else READ_BATCH_VALUES
    clean: dict[str, Any] = {
        "mode": mode,
        "method": method,
        "path": _endpoint(
            value["path"], f"{where}.path", allowed if mode == "per_item" else frozenset()
        ),
        "quantity": value["quantity"],
    }
    if value.get("query") is not None:
        clean["query"] = _query(value["query"], f"{where}.query", allowed)
    if value.get("body") is not None:
        if method != "POST":
            raise ValueError(f"{where}.body is only for method POST")
        template_check(value["body"], where=f"{where}.body", allowed=allowed)
        clean["body"] = value["body"]
    paths = {"quantity": path_parse(value["quantity"], where=f"{where}.quantity")}
    if mode == "batch":
        if value.get("sku") is None:
            raise ValueError(
                f"{where}.sku (the answer path of each row's SKU) is required in mode batch"
            )
        paths["sku"] = path_parse(value["sku"], where=f"{where}.sku")
        clean["sku"] = value["sku"]
        if not paths["sku"].has_rows:
            raise ValueError(f"{where}.sku must read rows ([]) in mode batch")
        size = value.get("batch_size", 50)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 500:
            raise ValueError(f"{where}.batch_size must be an integer from 1 to 500")
        clean["batch_size"] = size
    else:
        for name in ("sku", "batch_size"):
            if name in value:
                raise ValueError(f"{where}.{name} is only for mode batch")
    _same_rows(paths, where, per_item=mode == "per_item")
    return clean


def _orders(value: Any) -> dict[str, Any]:
    where = "options.orders"
    _fields(value, where, required=("list", "fetch", "status_map"), optional=())
    listing = value["list"]
    _fields(
        listing,
        f"{where}.list",
        required=("path", "id"),
        optional=("method", "query", "body", "status", "updated_at", "cursor"),
    )
    method = _choice(listing.get("method", "GET"), f"{where}.list.method", READ_METHODS)
    clean_list: dict[str, Any] = {
        "method": method,
        "path": _endpoint(listing["path"], f"{where}.list.path", frozenset()),
    }
    used: set[str] = set()
    if listing.get("query") is not None:
        clean_list["query"] = _query(listing["query"], f"{where}.list.query", LIST_VALUES)
        used |= _query_used(listing["query"])
    if listing.get("body") is not None:
        if method != "POST":
            raise ValueError(f"{where}.list.body is only for method POST")
        used |= template_check(listing["body"], where=f"{where}.list.body", allowed=LIST_VALUES)
        clean_list["body"] = listing["body"]
    if "page" in used and "cursor" in used:
        raise ValueError(f"{where}.list pages by {{{{page}}}} or by {{{{cursor}}}}, not both")
    if "cursor" in used and listing.get("cursor") is None:
        raise ValueError(
            f"{where}.list.cursor (the answer path of the next cursor) is "
            "required with {{cursor}}"
        )
    paths = {}
    for name in ("id", "status", "updated_at", "cursor"):
        if listing.get(name) is not None:
            paths[name] = path_parse(listing[name], where=f"{where}.list.{name}")
            clean_list[name] = listing[name]
    if not paths["id"].has_rows:
        raise ValueError(f"{where}.list.id must read rows ([]), e.g. orders[].id")
    cursor = paths.pop("cursor", None)
    if cursor is not None and cursor.has_rows:
        raise ValueError(f"{where}.list.cursor reads one value, not rows")
    _same_rows(paths, f"{where}.list", per_item=False)
    return {
        "list": clean_list,
        "fetch": _fetch(value["fetch"], f"{where}.fetch"),
        "status_map": _status_map(value["status_map"], f"{where}.status_map"),
    }


def _fetch(fetch: Any, where: str) -> dict[str, Any]:
    _fields(
        fetch,
        where,
        required=("path", "id", "status", "sku", "quantity"),
        optional=(
            "method",
            "query",
            "line_id",
            "price",
            "name",
            "placed_at",
            "paid_at",
            "updated_at",
            "currency",
            "amount",
            "number",
        ),
    )
    clean: dict[str, Any] = {
        "method": _choice(fetch.get("method", "GET"), f"{where}.method", ("GET",)),
        "path": _endpoint(fetch["path"], f"{where}.path", FETCH_VALUES),
    }
    if fetch.get("query") is not None:
        clean["query"] = _query(fetch["query"], f"{where}.query", FETCH_VALUES)
    if "order_id" not in _text_used(fetch["path"]) | _query_used(fetch.get("query") or {}):
        raise ValueError(f"{where} must name the order: {{{{order_id}}}} in its path or query")
    order_paths, line_paths = {}, {}
    for name in (
        "id",
        "status",
        "placed_at",
        "paid_at",
        "updated_at",
        "currency",
        "amount",
        "number",
        "sku",
        "quantity",
        "line_id",
        "price",
        "name",
    ):
        if fetch.get(name) is None:
            continue
        parsed = path_parse(fetch[name], where=f"{where}.{name}")
        (line_paths if name in ("sku", "quantity", "line_id", "price", "name") else order_paths)[
            name
        ] = parsed
        clean[name] = fetch[name]
    for name, parsed in order_paths.items():
        if parsed.has_rows:
            raise ValueError(f"{where}.{name} reads one value of the order, not rows")
    for name, parsed in line_paths.items():
        if not parsed.has_rows:
            raise ValueError(
                f"{where}.{name} must read the order's lines ([]), e.g. lines[].{name}"
            )
    _same_rows(line_paths, where, per_item=False)
    return clean


def _status_map(value: Any, where: str) -> dict[str, str | None]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where} must be a non-empty object (the shop's status -> ours)")
    if len(value) > 100:
        raise ValueError(f"{where} has more than 100 statuses")
    ours = [status.value for status in OrderStatus]
    clean: dict[str, str | None] = {}
    for raw, status in value.items():
        if not raw or len(raw) > 100 or not raw.isprintable():
            raise ValueError(f"{where}: a shop status must be 1 to 100 printable characters")
        if status is not None and status not in ours:
            raise ValueError(
                f"{where}.{raw[:40]} must be one of {', '.join(ours)} or null (says nothing "
                "about stock)"
            )
        clean[raw] = status
    return clean


# --- pieces -------------------------------------------------------------------------------------


def _fields(
    value: Any, where: str, *, required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{where}: unknown field {', '.join(str(u)[:40] for u in unknown[:5])}")
    missing = [name for name in required if value.get(name) is None]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{where} must be one of {', '.join(choices)}")
    return value


def _endpoint(value: Any, where: str, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or not value or len(value) > ENDPOINT_MAX:
        raise ValueError(f"{where} must be a path of 1 to {ENDPOINT_MAX} characters")
    text_placeholders(value, where=where, allowed=allowed)
    bare = re.sub(r"\{\{\s*[A-Za-z_]+\s*\}\}", "x", value)
    if not ENDPOINT.fullmatch(bare) or "//" in bare:
        raise ValueError(
            f"{where} must start with / and hold only URL path characters (no query, "
            "fragment, spaces or //)"
        )
    if any(segment in (".", "..") for segment in bare.split("/")):
        raise ValueError(f"{where} must not hold . or .. segments")
    return value


def _query(value: Any, where: str, allowed: frozenset[str]) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 30:
        raise ValueError(f"{where} must be an object of at most 30 query parameters")
    for name, template in value.items():
        if not name or len(name) > 100 or not name.isprintable():
            raise ValueError(f"{where}: a parameter name must be 1 to 100 printable characters")
        if not isinstance(template, str) or len(template) > 500:
            raise ValueError(f"{where}.{name[:40]} must be a string of at most 500 characters")
        text_placeholders(template, where=f"{where}.{name[:40]}", allowed=allowed)
    return dict(value)


def _query_used(query: dict[str, str]) -> set[str]:
    return set().union(*(_text_used(template) for template in query.values())) if query else set()


def _text_used(text: str) -> set[str]:
    return set(re.findall(r"\{\{\s*([A-Za-z_]+)\s*\}\}", text))


def _same_rows(paths: dict[str, AnswerPath], where: str, *, per_item: bool) -> None:
    """Paths read together must agree on their rows (the same array, or none)."""
    if per_item:
        for name, parsed in paths.items():
            if parsed.has_rows:
                raise ValueError(
                    f"{where}.{name} reads one answer per item: no [] in mode per_item"
                )
        return
    rows = {parsed.rows for parsed in paths.values() if parsed.has_rows}
    if len(rows) > 1:
        names = ", ".join(f"{where}.{name}" for name in sorted(paths))
        raise ValueError(f"{names} must read the same rows (the same path up to [])")
