"""The agent's stock endpoints: checksums over SKU ranges, and rows of a range (see
`erp_mapping.agent_server`).

This is the ERP's side of the reconciliation protocol (README, "ERP reconciliation"), written
from the protocol alone so that it checks SyncStore's side rather than sharing its code:

- `GET /stock/checksums?ranges=<lo>..<hi>,...`: per range, the number of stock rows with
  `lo <= sku < hi` (byte order; an empty bound is open) and the SHA-256 (hex) of their lines
  `sku|warehouse|quantity\\n` (quantity with exactly three decimals) sorted by (sku,
  warehouse). Each bound is percent-encoded (UTF-8, every byte but letters, digits, `-`, `_`
  and `~`), so a `.` or `,` inside a SKU cannot be mistaken for the syntax. At most
  `max_ranges` ranges a call (400 `too_many_ranges` beyond).
- `GET /stock?from_sku=&to_sku=[&cursor=][&limit=]`: the rows of one range, sorted, at most
  `page_rows` a page, `next_cursor` (opaque) while more remain.

Rows with quantity 0 are not held: setting a row to 0 removes it. Every call must carry a
valid `X-SyncStore-Signature` (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`,
for a GET `"<t>.GET <path>?<query>"` as received) made with the configured `secret` within
five minutes; otherwise 401 `invalid_signature`.

The stock is held as two sorted lists (keys and lines), so a range is two bisections and one
hash over a slice: 100,000 rows load in a fraction of a second and a checksum call over all of
them takes milliseconds, without a dict lookup per row.
"""

import base64
import binascii
import hashlib
import json
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from decimal import Decimal
from urllib.parse import unquote

from core.sandbox import SandboxRequest, SandboxResponse
from erp_mapping.agent_server.signing import signature_valid

DEFAULT_SECRET = "sandbox-agent-secret"  # noqa: S105 - the fake agent's well-known secret
MAX_RANGES = 256
PAGE_ROWS = 5000
_MILLI = Decimal("0.001")

Row = tuple[str, str, Decimal]


def quantity_text(quantity: Decimal) -> str:
    """A quantity as the protocol writes it: exactly three decimals ("12.000")."""
    return f"{quantity.quantize(_MILLI):f}"


def generated_stock(
    skus: int, *, seed: int = 0, warehouses: Iterable[str] = ("MAIN",), prefix: str = "ERP-"
) -> Iterator[Row]:
    """Yield a generated catalogue's stock rows in (sku, warehouse) order.

    SKU i is `f"{prefix}{i:07d}"`, held in `warehouses[i % len(warehouses)]`, with quantity
    `(i * 7919 + seed) % 997 + 1 + (i % 8) / 8` (never 0; one row in eight whole, the others
    with decimals). Used by the benchmark to give both sides the same catalogue.
    """
    codes = tuple(warehouses)
    for i in range(skus):
        whole = (i * 7919 + seed) % 997 + 1
        yield f"{prefix}{i:07d}", codes[i % len(codes)], Decimal(whole) + Decimal(i % 8) / 8


class AgentStockMixin:
    """Serves the ERP's stock, as the reconciliation reads it (see the module)."""

    def __init__(
        self,
        *,
        secret: str = DEFAULT_SECRET,
        max_ranges: int = MAX_RANGES,
        page_rows: int = PAGE_ROWS,
    ) -> None:
        self.stock_secret = secret
        self.stock_max_ranges = int(max_ranges)
        self.stock_page_rows = int(page_rows)
        self._stock_lock = threading.Lock()
        self._stock_keys: list[tuple[str, str]] = []
        self._stock_lines: list[str] = []
        # Figures for tests and the benchmark: what the agent was asked and served.
        self.stock_rows_served = 0
        self.stock_ranges_checked = 0

    # --- the ERP's stock -------------------------------------------------------------------

    def stock_reset(self) -> None:
        with self._stock_lock:
            self._stock_keys, self._stock_lines = [], []
            self.stock_rows_served = 0
            self.stock_ranges_checked = 0

    def stock_load(self, rows: Iterable[Row | dict]) -> int:
        """Replace the ERP's stock with these rows ((sku, warehouse, quantity) or dicts with
        `sku`, `warehouse`, `quantity`); rows with quantity 0 are dropped. Return the count."""
        held: dict[tuple[str, str], Decimal] = {}
        for row in rows:
            if isinstance(row, dict):
                row = (row["sku"], row["warehouse"], row["quantity"])
            sku, warehouse, quantity = row
            held[(sku, warehouse)] = Decimal(str(quantity)).quantize(_MILLI)
        keys = sorted(key for key, quantity in held.items() if quantity != 0)
        lines = [f"{sku}|{code}|{quantity_text(held[(sku, code)])}\n" for sku, code in keys]
        with self._stock_lock:
            self._stock_keys, self._stock_lines = keys, lines
        return len(keys)

    def stock_generate(
        self,
        skus: int,
        *,
        seed: int = 0,
        warehouses: Iterable[str] = ("MAIN",),
        prefix: str = "ERP-",
    ) -> int:
        """Load a generated catalogue (`generated_stock`): already sorted, so no sort."""
        keys, lines = [], []
        for sku, code, quantity in generated_stock(
            skus, seed=seed, warehouses=warehouses, prefix=prefix
        ):
            keys.append((sku, code))
            lines.append(f"{sku}|{code}|{quantity_text(quantity)}\n")
        if keys != sorted(keys):  # a prefix that sorts oddly: sort like any other load
            return self.stock_load(
                generated_stock(skus, seed=seed, warehouses=warehouses, prefix=prefix)
            )
        with self._stock_lock:
            self._stock_keys, self._stock_lines = keys, lines
        return len(keys)

    def stock_set(self, sku: str, warehouse: str, quantity: Decimal | int | str) -> None:
        """Set one row (0 removes it), as a count in the ERP would."""
        quantity = Decimal(str(quantity)).quantize(_MILLI)
        key = (sku, warehouse)
        with self._stock_lock:
            index = bisect_left(self._stock_keys, key)
            present = index < len(self._stock_keys) and self._stock_keys[index] == key
            if quantity == 0:
                if present:
                    del self._stock_keys[index]
                    del self._stock_lines[index]
                return
            line = f"{sku}|{warehouse}|{quantity_text(quantity)}\n"
            if present:
                self._stock_lines[index] = line
            else:
                insort(self._stock_keys, key)
                self._stock_lines.insert(index, line)

    def stock_get(self, sku: str, warehouse: str) -> Decimal:
        """The quantity the ERP holds (0 when it has no row)."""
        key = (sku, warehouse)
        with self._stock_lock:
            index = bisect_left(self._stock_keys, key)
            if index < len(self._stock_keys) and self._stock_keys[index] == key:
                return _line_quantity(self._stock_lines[index])
        return Decimal(0)

    def stock_rows(self, from_sku: str = "", to_sku: str = "") -> list[Row]:
        """The rows with `from_sku <= sku < to_sku` (empty: open), sorted."""
        with self._stock_lock:
            start, end = self._stock_span(from_sku, to_sku)
            keys = self._stock_keys[start:end]
            lines = self._stock_lines[start:end]
        return [(*key, _line_quantity(line)) for key, line in zip(keys, lines, strict=True)]

    def stock_count(self) -> int:
        with self._stock_lock:
            return len(self._stock_keys)

    def _stock_span(self, lo: str, hi: str) -> tuple[int, int]:
        """Slice bounds of the rows in [lo, hi) (under the lock). `(lo,)` sorts before every
        key of that SKU, so a bisection on it finds the SKU's first row."""
        start = bisect_left(self._stock_keys, (lo,)) if lo else 0
        end = bisect_left(self._stock_keys, (hi,)) if hi else len(self._stock_keys)
        return start, max(start, end)

    # --- HTTP ------------------------------------------------------------------------------

    def handle_checksums(self, request: SandboxRequest) -> SandboxResponse:
        refused = self._stock_refusal(request)
        if refused is not None:
            return refused
        values = request.query.get("ranges", [])
        if len(values) != 1 or not values[0]:
            return _bad_request("missing_ranges", "give ranges=<lo>..<hi>,...")
        pieces = values[0].split(",")
        if len(pieces) > self.stock_max_ranges:
            return _bad_request("too_many_ranges", f"at most {self.stock_max_ranges} ranges a call")
        ranges = []
        for piece in pieces:
            bounds = piece.split("..")
            if len(bounds) != 2:
                return _bad_request("invalid_range", f"not <lo>..<hi>: {piece[:100]}")
            try:
                lo, hi = (unquote(bound, errors="strict") for bound in bounds)
            except UnicodeDecodeError:
                return _bad_request("invalid_range", f"not UTF-8: {piece[:100]}")
            ranges.append((piece, lo, hi))
        answer = []
        with self._stock_lock:
            for piece, lo, hi in ranges:
                start, end = self._stock_span(lo, hi)
                digest = hashlib.sha256("".join(self._stock_lines[start:end]).encode("utf-8"))
                answer.append({"range": piece, "count": end - start, "sha256": digest.hexdigest()})
            self.stock_ranges_checked += len(ranges)
        return SandboxResponse.json(200, {"ranges": answer})

    def handle_stock(self, request: SandboxRequest) -> SandboxResponse:
        refused = self._stock_refusal(request)
        if refused is not None:
            return refused
        lo = _single(request, "from_sku")
        hi = _single(request, "to_sku")
        cursor = _single(request, "cursor")
        try:
            limit = int(_single(request, "limit") or self.stock_page_rows)
        except ValueError:
            return _bad_request("invalid_limit", "limit must be a whole number")
        limit = max(1, min(limit, self.stock_page_rows))
        after = None
        if cursor:
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(cursor.encode())))
            except (ValueError, TypeError, binascii.Error):
                return _bad_request("invalid_cursor", "unknown cursor")
            if len(after) != 2 or not all(isinstance(part, str) for part in after):
                return _bad_request("invalid_cursor", "unknown cursor")
        with self._stock_lock:
            start, end = self._stock_span(lo, hi)
            if after is not None:
                start = max(start, bisect_right(self._stock_keys, after))
            stop = min(end, start + limit)
            keys = self._stock_keys[start:stop]
            lines = self._stock_lines[start:stop]
            more = stop < end
            self.stock_rows_served += len(keys)
        rows = [
            {"sku": sku, "warehouse": code, "quantity": line.rsplit("|", 1)[1].rstrip()}
            for (sku, code), line in zip(keys, lines, strict=True)
        ]
        next_cursor = None
        if more and keys:
            next_cursor = base64.urlsafe_b64encode(json.dumps(list(keys[-1])).encode()).decode()
        return SandboxResponse.json(200, {"rows": rows, "next_cursor": next_cursor})

    def _stock_refusal(self, request: SandboxRequest) -> SandboxResponse | None:
        if request.method != "GET":
            return SandboxResponse.json(
                405, {"error": "method_not_allowed", "message": "GET only"}, {"Allow": "GET"}
            )
        header = request.headers.get("X-Syncstore-Signature", "")
        # The stock secret, or any outbound secret the orders endpoint was given (one agent
        # serves each vendor registered with it).
        secrets = [self.stock_secret, *getattr(self, "credentials", {})]
        if not any(
            secret
            and signature_valid(
                secret,
                header,
                request.body,
                method=request.method,
                path=request.path,
                query_string=request.query_string,
            )
            for secret in secrets
        ):
            return SandboxResponse.json(
                401, {"error": "invalid_signature", "message": "missing or invalid signature"}
            )
        return None


def _line_quantity(line: str) -> Decimal:
    return Decimal(line.rsplit("|", 1)[1].rstrip())


def _single(request: SandboxRequest, name: str) -> str:
    values = request.query.get(name) or [""]
    return values[-1]


def _bad_request(error: str, message: str) -> SandboxResponse:
    return SandboxResponse.json(400, {"error": error, "message": message})
