"""The reconciliation protocol, SyncStore's side: SKU ranges, checksum lines, agent calls.

A range `lo..hi` holds the rows with `lo <= sku < hi` in byte order (C collation); an empty
bound is open. A row is `sku|warehouse|quantity` with the quantity written with exactly three
decimals; rows with quantity 0 are left out on both sides (no row and a zero row are the same
stock). A range's checksum is its row count and the SHA-256 (hex) of its lines sorted by
(sku, warehouse), each line ending in "\\n" (an empty range hashes the empty string). In the
`ranges` parameter each bound is percent-encoded (every UTF-8 byte but letters, digits, `-`,
`_` and `~`), so `.` and `,` in a SKU are never read as syntax.
"""

import hashlib
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from erp_mapping.clients.agent import AgentCallError, AgentClient

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A checksum call carries at most this many ranges, and a `ranges` value at most this many
# characters once encoded (request lines past 8 KB are refused by many servers).
RANGES_PER_CALL = 256
RANGES_PARAM_BUDGET = 6000
# Rows asked for per page of `GET /stock` (the agent may answer fewer).
ROWS_PAGE = 5000
_MILLI = Decimal("0.001")


class ReconcileFailed(Exception):
    """The reconciliation cannot go on; the code and message are recorded on the event."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, order=True)
class SkuRange:
    """SKUs with `lo <= sku < hi` in byte order; "" is an open bound."""

    lo: str = ""
    hi: str = ""

    def __contains__(self, sku: str) -> bool:
        return sku >= self.lo and (not self.hi or sku < self.hi)

    @property
    def param(self) -> str:
        return f"{bound_encode(self.lo)}..{bound_encode(self.hi)}"

    def __str__(self) -> str:
        return f"{self.lo}..{self.hi}"


@dataclass(frozen=True)
class Checksum:
    count: int
    sha256: str


EMPTY = Checksum(0, EMPTY_SHA256)


def bound_encode(value: str) -> str:
    """A range bound as the `ranges` parameter writes it (see the module)."""
    return quote(value, safe="").replace(".", "%2E")


def quantity_text(quantity: Decimal) -> str:
    """A quantity with exactly three decimals, as in a checksum line ("12.000")."""
    return f"{quantity.quantize(_MILLI):f}"


def line(sku: str, warehouse: str, quantity: Decimal) -> str:
    return f"{sku}|{warehouse}|{quantity_text(quantity)}\n"


def checksums_of(
    rows: Sequence[tuple[str, str, Decimal]], ranges: Sequence[SkuRange]
) -> list[Checksum]:
    """The checksums of `ranges` over `rows` (non-zero, sorted by (sku, warehouse)).

    Python strings compare by code point, which is the byte order of their UTF-8 form.
    """
    keys = [(sku, code) for sku, code, _ in rows]
    answer = []
    for rng in ranges:
        start = bisect_left(keys, (rng.lo,)) if rng.lo else 0
        end = bisect_left(keys, (rng.hi,)) if rng.hi else len(keys)
        end = max(start, end)
        digest = hashlib.sha256()
        for sku, code, quantity in rows[start:end]:
            digest.update(line(sku, code, quantity).encode("utf-8"))
        answer.append(Checksum(end - start, digest.hexdigest()))
    return answer


# --- Agent calls ---------------------------------------------------------------------------


def _batches(ranges: Sequence[SkuRange]) -> Iterator[list[SkuRange]]:
    batch: list[SkuRange] = []
    size = 0
    for rng in ranges:
        cost = len(quote(rng.param, safe="")) + 3  # the comma, itself encoded
        if batch and (len(batch) >= RANGES_PER_CALL or size + cost > RANGES_PARAM_BUDGET):
            yield batch
            batch, size = [], 0
        batch.append(rng)
        size += cost
    if batch:
        yield batch


def _call(client: AgentClient, path: str, params: dict[str, str]):
    try:
        return client.call("GET", path, params=params).data
    except AgentCallError as exc:
        if exc.status is None:
            code = "agent_unreachable"
        elif exc.status in (401, 403):
            code = "agent_unauthorized"
        else:
            code = "agent_error_status"
        raise ReconcileFailed(f"GET {path}: {exc}", code=code) from None


def agent_checksums(
    client: AgentClient, ranges: Sequence[SkuRange], *, calls: list[int]
) -> list[Checksum]:
    """The agent's checksums of `ranges`, in their order (as many calls as the limits need).

    `calls` is a one-item counter of requests made. Raises `ReconcileFailed`.
    """
    answer: list[Checksum] = []
    for batch in _batches(ranges):
        calls[0] += 1
        data = _call(client, "stock/checksums", {"ranges": ",".join(r.param for r in batch)})
        items = data.get("ranges") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(batch):
            raise ReconcileFailed(
                f"The agent answered {len(items) if isinstance(items, list) else 'no'} "
                f"checksums for {len(batch)} ranges.",
                code="agent_bad_answer",
            )
        for rng, item in zip(batch, items, strict=True):
            answer.append(_checksum_read(rng, item))
    return answer


def _checksum_read(rng: SkuRange, item: object) -> Checksum:
    if not isinstance(item, dict) or item.get("range") != rng.param:
        raise ReconcileFailed(
            f"The agent's checksum does not name the range {rng.param!r}.",
            code="agent_bad_answer",
        )
    count, digest = item.get("count"), item.get("sha256")
    if (
        not isinstance(count, int)
        or isinstance(count, bool)
        or count < 0
        or not isinstance(digest, str)
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest.lower())
    ):
        raise ReconcileFailed(
            f"The agent's checksum of {rng.param!r} is not a count and a SHA-256.",
            code="agent_bad_answer",
        )
    return Checksum(count, digest.lower())


def agent_rows(client: AgentClient, rng: SkuRange, *, calls: list[int]) -> Iterator[object]:
    """Yield the agent's rows of one range as sent (unchecked), page after page.

    A cursor sent twice (an agent going round in circles) fails the run.
    """
    seen: set[str] = set()
    cursor = ""
    while True:
        params = {"from_sku": rng.lo, "to_sku": rng.hi, "limit": str(ROWS_PAGE)}
        if cursor:
            params["cursor"] = cursor
        calls[0] += 1
        data = _call(client, "stock", params)
        rows = data.get("rows") if isinstance(data, dict) else None
        following = data.get("next_cursor") if isinstance(data, dict) else None
        if not isinstance(rows, list) or not (following is None or isinstance(following, str)):
            raise ReconcileFailed(
                f"The agent's rows of {rng} are not a list with a cursor.",
                code="agent_bad_answer",
            )
        yield from rows
        if not following:
            return
        if following in seen:
            raise ReconcileFailed(
                f"The agent sent the same cursor twice for {rng}.", code="agent_bad_answer"
            )
        seen.add(following)
        cursor = following


@dataclass(frozen=True)
class ErpRow:
    sku: str
    warehouse: str
    quantity: Decimal


def erp_row_read(row: object, rng: SkuRange, max_quantity: Decimal) -> ErpRow | str:
    """The row, or why it cannot be used (a stable reason code)."""
    if not isinstance(row, dict):
        return "not_an_object"
    sku, code, raw = row.get("sku"), row.get("warehouse"), row.get("quantity")
    if not isinstance(sku, str) or not sku or not isinstance(code, str) or not code:
        return "missing_sku_or_warehouse"
    if sku not in rng:
        return "outside_range"
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return "invalid_quantity"
    try:
        quantity = Decimal(str(raw))
    except InvalidOperation:
        return "invalid_quantity"
    # A negative count is the ERP's figure like any other (the agent ingest takes it too,
    # within the same bounds): the ERP wins for physical stock.
    if not quantity.is_finite() or abs(quantity) > max_quantity:
        return "invalid_quantity"
    if quantity != quantity.quantize(_MILLI):
        return "invalid_quantity"  # more than three decimals
    return ErpRow(sku, code, quantity.quantize(_MILLI))
