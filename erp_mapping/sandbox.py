"""The ERP sandbox (a fake ERP REST API) and an ERP-agent simulator.

`ErpSandbox` speaks the contract the nightly pull reads: `GET {base}/inventory` with
`Authorization: Bearer <token>` answers a JSON array of `{"sku", "qty"}` objects with optional
`"discontinued"` and `"warehouse"`; a wrong or missing token answers 401 with a JSON error.
Its rows are generated from a seed (SKU i is `f"{sku_prefix}{i:07d}"`, 0 <= i < skus) and
streamed in chunks, so a million rows are served with flat memory. Options (constructor,
`configure()` or `POST /_sandbox/configure`) choose the size and content and the failure
modes: first calls failing, first answers cut off mid-body, latency, trickled chunks, garbage
rows, a malformed (truncated JSON) body.

`AgentSimulator` plays the on-premise agent: it posts heartbeats and ingest batches
(`{"rows": [...]}`, at most 5,000 rows a POST) to SyncStore's agent API, over HTTP or through
an in-process Django test client, and generates consistent sample warehouses, items (codes
taken from the sample mapping file) and stock rows.
"""

import dataclasses
import functools
import hmac
import json
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import structlog

from core.http import http_session
from core.sandbox import (
    SandboxApp,
    SandboxRequest,
    SandboxResponse,
    StreamCut,
    register_sandbox,
)

logger = structlog.get_logger(__name__)

DEFAULT_TOKEN = "sandbox-erp-token"  # noqa: S105 - the fake ERP's well-known token
DEFAULT_SKU_PREFIX = "ERP-"
SAMPLE_MAPPING_FILE = Path(__file__).resolve().parent / "data" / "item-mapping.json"

_M64 = (1 << 64) - 1
_RATIO_ONE = 1 << 16  # ratios are compared on 16 bits of a row's hash
_QTY_MODULUS = 997  # prime: consecutive quantity epochs of a row always differ
FRAMINGS = ("chunked", "length")
_GARBAGE_KINDS = ("missing_sku", "non_numeric_qty", "negative_qty", "string_qty", "duplicate_sku")


def _mix(value: int) -> int:
    """SplitMix64: a fast, well-spread 64-bit hash of an integer (stable across processes)."""
    value = (value + 0x9E3779B97F4A7C15) & _M64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _M64
    return value ^ (value >> 31)


def sku_for(index: int, prefix: str = DEFAULT_SKU_PREFIX) -> str:
    """Return the SKU of generated row/item `index` (shared by the sandbox and the agent)."""
    return f"{prefix}{index:07d}"


# --- The ERP sandbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErpConfig:
    """What the ERP sandbox serves and how (see `ErpSandbox`)."""

    token: str = DEFAULT_TOKEN
    skus: int = 1000
    warehouses: tuple[str, ...] = ("MAIN",)
    generation: int = 0
    changed_ratio: float = 1.0
    discontinued_ratio: float = 0.0
    decimal_ratio: float = 0.0
    garbage_ratio: float = 0.0
    rows: list | None = None
    sku_prefix: str = DEFAULT_SKU_PREFIX
    seed: int = 0
    latency: float = 0.0
    trickle: float = 0.0
    chunk_rows: int = 2000
    fail_first: int = 0
    fail_status: int = 500
    cut_first: int = 0
    framing: str = "chunked"
    truncate: float = 0.0

    def validated(self) -> "ErpConfig":
        """Return the configuration with values normalised; raise ValueError/TypeError on a bad
        one."""
        warehouses = self.warehouses
        if isinstance(warehouses, str) or not all(
            isinstance(code, str) and code for code in warehouses
        ):
            raise ValueError("warehouses must be a list of non-empty codes")
        for name in ("changed_ratio", "discontinued_ratio", "decimal_ratio", "garbage_ratio"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        truncate = 0.5 if self.truncate is True else float(self.truncate or 0)
        if not 0 <= truncate < 1:
            raise ValueError("truncate must be true/false or a share of the rows below 1")
        if self.rows is not None:
            if not isinstance(self.rows, list):
                raise ValueError("rows must be a list")
            json.dumps(self.rows)  # served verbatim: must be plain JSON values
        if self.framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}")
        checks = {
            "cut_first": int(self.cut_first) >= 0,
            "skus": int(self.skus) >= 0,
            "chunk_rows": int(self.chunk_rows) >= 1,
            "fail_first": int(self.fail_first) >= 0,
            "fail_status": 400 <= int(self.fail_status) <= 599,
            "latency": float(self.latency) >= 0,
            "trickle": float(self.trickle) >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"out of range: {', '.join(bad)}")
        return dataclasses.replace(
            self,
            token=str(self.token),
            warehouses=tuple(warehouses),
            skus=int(self.skus),
            generation=int(self.generation),
            seed=int(self.seed),
            chunk_rows=int(self.chunk_rows),
            fail_first=int(self.fail_first),
            fail_status=int(self.fail_status),
            cut_first=int(self.cut_first),
            truncate=truncate,
            **{
                name: float(getattr(self, name))
                for name in (
                    "changed_ratio",
                    "discontinued_ratio",
                    "decimal_ratio",
                    "garbage_ratio",
                    "latency",
                    "trickle",
                )
            },
        )

    def updated(self, options: dict[str, Any]) -> "ErpConfig":
        """Return a validated copy with `options` applied; raise TypeError on unknown ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)}")
        return dataclasses.replace(self, **options).validated()

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["warehouses"] = list(self.warehouses)
        return data


class ErpSandbox(SandboxApp):
    """A fake ERP REST API: `GET /inventory` with a bearer token, streamed JSON rows.

    Any path ending in `/inventory` is the inventory (so a base URL may carry a prefix); other
    paths answer 404, other methods 405. A missing or wrong bearer token answers 401
    `{"error": "invalid_token", ...}` with `WWW-Authenticate: Bearer`.

    Options (`ErpConfig`):
    - `token`, `skus` (rows served), `seed`, `sku_prefix`;
    - `warehouses`: row i belongs to `warehouses[i % len]`; with one code (or none) rows
      carry no `warehouse`;
    - `generation`: same generation, same bytes; moving to the next generation (at a fixed
      `changed_ratio`) changes the quantity of about `changed_ratio` of the rows (each of
      those to a different value; the others keep theirs);
    - `discontinued_ratio` (rows with `"discontinued": true`, fixed per row),
      `decimal_ratio` (quantities with 3 decimals, fixed per row);
    - `garbage_ratio`: that share of rows is replaced by an invalid one (missing sku,
      non-numeric qty, negative qty, qty as a string, or an exact repeat of the last clean
      row, i.e. a duplicate sku and warehouse); `expected_rows()` leaves them out;
    - `rows`: an explicit list served verbatim instead of generated rows;
    - `latency` (seconds before any answer starts), `trickle` (seconds between chunks of
      `chunk_rows` rows), `fail_first` (the next N calls answer `fail_status`, default 500,
      with a JSON error), `cut_first` (the next N answers after those failures drop the
      connection halfway through their last chunk: a cut-off download, which the HTTP
      framing shows as incomplete), `truncate` (true, or the share of rows after which a
      complete answer stops in the middle of a row: well framed but invalid JSON);
    - `framing`: `chunked` (the default: chunked transfer encoding) or `length` (a
      Content-Length computed first, by generating the body twice).

    `reset()` (and `POST /_sandbox/reset`) also restores the constructor's options.
    Thread-safe: each answer streams from the configuration it started with, so configuring
    during a long answer affects the next ones only.
    """

    name = "erp"

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self._initial = ErpConfig().updated(options)
        self._config = self._initial
        self._failures_left = self._initial.fail_first
        self._cuts_left = self._initial.cut_first

    # --- configuration ---

    @property
    def config(self) -> ErpConfig:
        """The current options (`fail_first`, `cut_first` = failures and cuts still to come)."""
        with self._lock:
            return self._current()

    def _current(self) -> ErpConfig:
        return dataclasses.replace(
            self._config, fail_first=self._failures_left, cut_first=self._cuts_left
        )

    def configure(self, **options: Any) -> dict:
        """Apply options on top of the current ones; return the whole configuration.

        `fail_first` and `cut_first` re-arm their counters. Raise TypeError/ValueError on an
        unknown option or a bad value (nothing changes then).
        """
        with self._lock:
            config = self._current().updated(options)
            self._config = config
            self._failures_left = config.fail_first
            self._cuts_left = config.cut_first
        return config.as_dict()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._config = self._initial
            self._failures_left = self._initial.fail_first
            self._cuts_left = self._initial.cut_first

    def describe(self) -> str:
        return f"/inventory  (Authorization: Bearer {self._initial.token})"

    def sku(self, index: int) -> str:
        """Return the SKU of generated row `index` under the current prefix."""
        return sku_for(index, self.config.sku_prefix)

    # --- HTTP ---

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        with self._lock:
            config = self._config
            failing = self._failures_left > 0
            if failing:
                self._failures_left -= 1
            cutting = not failing and self._cuts_left > 0
            if cutting:
                self._cuts_left -= 1
        if config.latency:
            time.sleep(config.latency)
        if failing:
            return SandboxResponse.json(
                config.fail_status,
                {"error": "sandbox_failure", "message": "failure injected by fail_first"},
            )
        if not request.path.rstrip("/").endswith("/inventory"):
            return SandboxResponse.json(404, {"error": "not_found", "message": "unknown path"})
        if request.method != "GET":
            return SandboxResponse.json(
                405, {"error": "method_not_allowed", "message": "GET only"}, {"Allow": "GET"}
            )
        supplied = request.headers.get("Authorization", "")
        expected = f"Bearer {config.token}"
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            return SandboxResponse.json(
                401,
                {"error": "invalid_token", "message": "missing or invalid bearer token"},
                {"WWW-Authenticate": 'Bearer realm="erp"'},
            )
        headers = {}
        if config.framing == "length":
            headers["Content-Length"] = str(sum(len(c) for c in self.body_chunks(config)))
        return SandboxResponse(200, self._paced(config, cut=cutting), headers)

    def _paced(self, config: ErpConfig, *, cut: bool = False) -> Iterator[bytes]:
        chunks = self.body_chunks(config)
        chunk = next(chunks)
        number = 0
        while True:
            following = next(chunks, None)
            if number and config.trickle:
                time.sleep(config.trickle)
            if following is None and cut:
                # The link drops halfway through the last chunk: the closing bracket and
                # the end of the HTTP body never arrive.
                yield chunk[: len(chunk) // 2]
                logger.info("erp_sandbox.cut", sent_chunks=number)
                raise StreamCut
            yield chunk
            if following is None:
                return
            chunk, number = following, number + 1

    # --- content ---

    def body_chunks(self, config: ErpConfig | None = None) -> Iterator[bytes]:
        """Yield the inventory body in chunks of `chunk_rows` rows (the first opens the array).

        The whole body is never held: memory stays flat whatever the size. Under `truncate`
        the body stops in the middle of a row (no closing bracket).
        """
        config = config or self.config
        texts = self._row_texts(config)
        total = len(config.rows) if config.rows is not None else config.skus
        cut = int(total * config.truncate) if config.truncate else None
        serving = islice(texts, cut) if cut is not None else texts
        batch = list(islice(serving, config.chunk_rows))
        served = len(batch)
        opening = "["
        while True:
            # One batch of lookahead, so the closing bracket rides on the last chunk.
            following = list(islice(serving, config.chunk_rows)) if batch else []
            text = opening + ",".join(batch)
            if not following:
                if cut is None:
                    yield (text + "]").encode()
                else:
                    tail = next(texts, "")
                    yield (text + ("," if served else "") + tail[: len(tail) // 2]).encode()
                return
            yield text.encode()
            opening = ","
            batch = following
            served += len(batch)

    def expected_rows(self) -> Iterator[dict]:
        """Yield the clean rows the current configuration serves, in order (no garbage).

        Quantities are `int`, or `Decimal` for 3-decimal ones: they compare equal to the
        body parsed with `ijson` or `json.loads(..., parse_float=Decimal)`. Explicit `rows`
        are yielded as given. Truncation is ignored (these are the rows the ERP holds).
        """
        config = self.config
        if config.rows is not None:
            yield from config.rows
            return
        multi = len(config.warehouses) > 1
        for i, warehouse, qty, discontinued, garbage in self._row_facts(config):
            if garbage is not None:
                continue
            row: dict[str, Any] = {"sku": sku_for(i, config.sku_prefix), "qty": qty}
            if multi:
                row["warehouse"] = warehouse
            if discontinued:
                row["discontinued"] = True
            yield row

    @staticmethod
    def _row_facts(
        config: ErpConfig,
    ) -> Iterator[tuple[int, str, Any, bool, str | None]]:
        """Yield (index, warehouse, qty, discontinued, garbage kind or None) per row.

        One hash of (seed, i) fixes a row's phase, decimal, discontinued and garbage choices;
        a second fixes its quantity sequence. The row's epoch `(phase + generation * R) >> 16`
        (R = changed_ratio on 16 bits) grows by one for exactly the rows whose phase crosses
        a boundary, which is a `changed_ratio` share of them per generation step.
        """
        key1 = _mix(config.seed * 2 + 1)
        key2 = _mix(config.seed * 2 + 2)
        step = config.generation * round(config.changed_ratio * _RATIO_ONE)
        decimal_cut = round(config.decimal_ratio * _RATIO_ONE)
        discontinued_cut = round(config.discontinued_ratio * _RATIO_ONE)
        garbage_cut = round(config.garbage_ratio * _RATIO_ONE)
        warehouses = config.warehouses or ("",)
        count = len(warehouses)
        clean_seen = False
        for i in range(config.skus):
            h1 = _mix(key1 ^ i)
            h2 = _mix(key2 ^ i)
            epoch = ((h1 & 0xFFFF) + step) >> 16
            whole = ((h2 & 0xFFFFF) + epoch * (1 + (h2 >> 20) % (_QTY_MODULUS - 1))) % (
                _QTY_MODULUS
            )
            if ((h1 >> 16) & 0xFFFF) < decimal_cut:
                thousandths = ((h2 >> 30) % 1000 + epoch * 7) % 1000
                qty: Any = Decimal(whole * 1000 + thousandths).scaleb(-3)
            else:
                qty = whole
            garbage = None
            if ((h1 >> 48) & 0xFFFF) < garbage_cut:
                garbage = _GARBAGE_KINDS[(h2 >> 52) % len(_GARBAGE_KINDS)]
                if garbage == "duplicate_sku" and not clean_seen:
                    garbage = "missing_sku"
            else:
                clean_seen = True
            discontinued = ((h1 >> 32) & 0xFFFF) < discontinued_cut
            yield i, warehouses[i % count], qty, discontinued, garbage

    @classmethod
    def _row_texts(cls, config: ErpConfig) -> Iterator[str]:
        """Yield each served row as compact JSON text."""
        if config.rows is not None:
            for row in config.rows:
                yield json.dumps(row, separators=(",", ":"))
            return
        prefix = json.dumps(config.sku_prefix)[1:-1]
        multi = len(config.warehouses) > 1
        codes = {code: f',"warehouse":{json.dumps(code)}' for code in config.warehouses}
        last_clean = ""
        for i, warehouse, qty, discontinued, garbage in cls._row_facts(config):
            where = codes[warehouse] if multi else ""
            if garbage is None:
                flag = ',"discontinued":true' if discontinued else ""
                last_clean = f'{{"sku":"{prefix}{i:07d}","qty":{qty}{where}{flag}}}'
                yield last_clean
            elif garbage == "missing_sku":
                yield f'{{"qty":{qty}{where}}}'
            elif garbage == "non_numeric_qty":
                value = '"n/a"' if i % 2 else "null"
                yield f'{{"sku":"{prefix}{i:07d}","qty":{value}{where}}}'
            elif garbage == "negative_qty":
                yield f'{{"sku":"{prefix}{i:07d}","qty":-{qty + 1}{where}}}'
            elif garbage == "string_qty":
                yield f'{{"sku":"{prefix}{i:07d}","qty":"{qty}"{where}}}'
            else:
                # An exact repeat of the last clean row: whichever copy a client keeps, the
                # quantity it applies is the expected one; only the count of invalid rows shows.
                yield last_clean


register_sandbox("erp", ErpSandbox)


# --- Sample data from the mapping file ------------------------------------------------------------


@dataclass(frozen=True)
class SampleCodes:
    """The active, non-empty ERP codes of the sample mapping file, by type."""

    units: tuple[str, ...]
    vat_rates: dict[str, Decimal]
    families: dict[str, str]
    subfamilies: dict[str, str]


DECIMAL_UNITS = frozenset({"KG", "L", "M", "M2"})  # stock counted with 3 decimals
SERVICE_UNITS = frozenset({"H", "FORF"})  # hours and flat fees: no stock managed
_RATE = re.compile(r"(\d+(?:[.,]\d+)?)\s*%")


@functools.cache
def sample_codes(path: Path = SAMPLE_MAPPING_FILE) -> SampleCodes:
    """Read the Convex mapping export and return its codes (VAT rates from the labels).

    A VAT label without a percentage (EXONERE, EXPORT, ...) counts as 0 %.
    """
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    active = [r for r in rows if r.get("isActive", True) and r.get("erpCode")]

    def of(kind: str) -> list[dict]:
        return sorted((r for r in active if r["mappingType"] == kind), key=lambda r: r["erpCode"])

    vat_rates = {}
    for row in of("vat"):
        match = _RATE.search(row["restoLabel"])
        vat_rates[row["erpCode"]] = (
            Decimal(match.group(1).replace(",", ".")) if match else Decimal(0)
        )
    return SampleCodes(
        units=tuple(r["erpCode"] for r in of("unit")),
        vat_rates=vat_rates,
        families={r["erpCode"]: r["restoLabel"] for r in of("family")},
        subfamilies={r["erpCode"]: r["restoLabel"] for r in of("subfamily")},
    )


def _ean13(body: str) -> str:
    """Append the EAN-13 check digit to 12 digits."""
    total = sum(int(d) * (3 if n % 2 else 1) for n, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


_CENT = Decimal("0.01")
_MILLI = Decimal("0.001")


# --- The agent simulator --------------------------------------------------------------------------


@dataclass
class IngestOutcome:
    """What the agent API answered to every batch of one push, merged."""

    kind: str
    rows: int = 0
    batches: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    results: list[dict] = field(default_factory=list)

    def merge(self, answer: dict, rows: int) -> None:
        self.rows += rows
        self.batches += 1
        for status, count in (answer.get("counts") or {}).items():
            self.counts[status] = self.counts.get(status, 0) + count
        self.results.extend(answer.get("results") or [])


class AgentApiError(Exception):
    """The agent API refused a call (non-2xx); `outcome` holds the batches answered before."""

    def __init__(self, message: str, *, status: int, body: Any, outcome: IngestOutcome | None):
        super().__init__(message)
        self.status = status
        self.body = body
        self.outcome = outcome


class AgentSimulator:
    """Play an ERP agent against SyncStore's agent API.

    Transports: `base_url` (real HTTP through `core.http.http_session()`) or `client` (a
    Django test `Client`/DRF `APIClient`, in process: the embedded demo runs no server).
    Every call sends `Authorization: Bearer <token>`. `push(kind, rows)` posts
    `{"rows": [...]}` to `/api/v1/erp/ingest/<kind>/` in batches of at most `batch_size`
    (5,000, the API's cap), lazily (rows may be a generator), and returns the merged
    `counts` and `results`; a non-2xx answer raises `AgentApiError` and stops the push.

    Sample data is deterministic for a `seed` and stamped with one `updated_at` (the
    construction time by default), so pushing the same sample twice is a replay.
    """

    API_PREFIX = "/api/v1/erp/"
    KINDS = ("warehouses", "items", "stock")
    MAX_BATCH = 5000

    def __init__(
        self,
        *,
        token: str,
        base_url: str = "",
        client: Any = None,
        batch_size: int = MAX_BATCH,
        seed: int = 0,
        sku_prefix: str = DEFAULT_SKU_PREFIX,
        updated_at: datetime | None = None,
        version: str = "sandbox-agent/1.0",
        timeout: float | None = None,
    ) -> None:
        if bool(base_url) == (client is not None):
            raise ValueError("give exactly one transport: base_url or client")
        if not 1 <= batch_size <= self.MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {self.MAX_BATCH}")
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.batch_size = batch_size
        self.seed = seed
        self.sku_prefix = sku_prefix
        self.updated_at = updated_at or datetime.now(UTC).replace(microsecond=0)
        self.version = version
        self.timeout = timeout

    # --- calls ---

    def heartbeat(self) -> dict:
        """Post a heartbeat (`{"version": ...}`) and return the answer."""
        status, answer = self._post("agents/heartbeat/", {"version": self.version})
        if not 200 <= status < 300:
            raise AgentApiError(
                f"heartbeat answered {status}", status=status, body=answer, outcome=None
            )
        return answer

    def push(self, kind: str, rows: Iterable[dict]) -> IngestOutcome:
        """Post `rows` to the `kind` ingest endpoint in batches; return the merged answers."""
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {', '.join(self.KINDS)}")
        outcome = IngestOutcome(kind=kind)
        iterator = iter(rows)
        while batch := list(islice(iterator, self.batch_size)):
            status, answer = self._post(f"ingest/{kind}/", {"rows": batch})
            if not 200 <= status < 300:
                raise AgentApiError(
                    f"ingest {kind} batch {outcome.batches + 1} answered {status}",
                    status=status,
                    body=answer,
                    outcome=outcome,
                )
            outcome.merge(answer, len(batch))
        logger.info(
            "erp_agent_simulator.pushed",
            kind=kind,
            rows=outcome.rows,
            batches=outcome.batches,
            counts=outcome.counts,
        )
        return outcome

    def push_warehouses(self, rows: Iterable[dict] | None = None) -> IngestOutcome:
        """Push warehouse rows (the sample ones by default)."""
        return self.push("warehouses", self.sample_warehouses() if rows is None else rows)

    def push_items(self, rows: Iterable[dict]) -> IngestOutcome:
        """Push item rows."""
        return self.push("items", rows)

    def push_stock(self, rows: Iterable[dict]) -> IngestOutcome:
        """Push stock rows."""
        return self.push("stock", rows)

    def _post(self, path: str, body: dict) -> tuple[int, Any]:
        url = self.API_PREFIX + path
        auth = f"Bearer {self.token}"
        if self.client is not None:
            response = self.client.post(
                url, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=auth
            )
        else:
            response = http_session().post(
                self.base_url + url,
                json=body,
                headers={"Authorization": auth},
                **({"timeout": self.timeout} if self.timeout else {}),
            )
        try:
            answer = response.json()
        except ValueError:
            answer = {"raw": response.content.decode("utf-8", "replace")}
        return response.status_code, answer

    # --- sample data ---

    def sample_warehouses(self) -> list[dict]:
        """Return MAIN (main and default), STORE (storage) and TRANSIT (transit) rows."""
        stamp = self.updated_at.isoformat()
        return [
            {
                "erp_id": f"WH-{code}",
                "code": code,
                "name": name,
                "is_main": code == "MAIN",
                "is_default": code == "MAIN",
                "type": kind,
                "updated_at": stamp,
            }
            for code, name, kind in (
                ("MAIN", "Main warehouse", "storage"),
                ("STORE", "Shop store", "storage"),
                ("TRANSIT", "Goods in transit", "transit"),
            )
        ]

    def sample_items(self, count: int, *, start: int = 0) -> Iterator[dict]:
        """Yield `count` item rows (SKUs `sku_for(start)`, ...) with codes from the sample file.

        Units, VAT codes and (sub)families are valid codes of `erp_mapping/data/
        item-mapping.json`; a subfamily always belongs to the family given with it. One
        item in 10 has no subfamily, one in 20 no family either, one in 4 no barcode;
        `price_incl_vat` is `price_excl_vat` plus the VAT rate read from the code's label.
        """
        codes = sample_codes()
        units = codes.units
        vats = sorted(codes.vat_rates)
        subfamilies = sorted(codes.subfamilies)
        stamp = self.updated_at.isoformat()
        key = _mix(self.seed * 2 + 101)
        for i in range(start, start + count):
            h = _mix(key ^ i)
            unit = units[h % len(units)]
            vat = vats[(h >> 8) % len(vats)]
            subfamily = subfamilies[(h >> 16) % len(subfamilies)]
            family = subfamily.rstrip("0123456789")
            excl = (Decimal(100 + (h >> 24) % 99_900) / 100).quantize(_CENT)
            incl = (excl * (1 + codes.vat_rates[vat] / 100)).quantize(_CENT, ROUND_HALF_UP)
            row: dict[str, Any] = {
                "erp_id": f"ART{i:07d}",
                "sku": sku_for(i, self.sku_prefix),
                "name": f"{codes.subfamilies[subfamily].title()} {i}",
                "unit_code": unit,
                "vat_code": vat,
            }
            if i % 20 != 19 and family in codes.families:
                row["family_code"] = family
                if i % 10 != 9:
                    row["subfamily_code"] = subfamily
            row["price_excl_vat"] = str(excl)
            row["price_incl_vat"] = str(incl)
            if i % 4 != 3:
                row["barcode"] = _ean13(f"20{i:010d}")
            row["manage_stock"] = unit not in SERVICE_UNITS
            row["allow_negative_stock"] = i % 50 == 49
            row["updated_at"] = stamp
            yield row

    def sample_stock(
        self,
        items: Iterable[dict],
        *,
        warehouses: Iterable[str] = ("MAIN", "STORE"),
        generation: int = 0,
    ) -> Iterator[dict]:
        """Yield a stock row per item and warehouse (quantities fixed by seed and generation).

        Items in KG/L/M/M2 get 3-decimal quantities; one row in 3 has an ordered quantity;
        `unit_cost` is about 60 % of the item's price excl. VAT; decimals are strings.
        """
        codes = tuple(warehouses)
        stamp = self.updated_at.isoformat()
        key = _mix(self.seed * 2 + 202 + generation * 7919)
        for item in items:
            sku = item["sku"]
            decimal = item.get("unit_code") in DECIMAL_UNITS
            price = Decimal(str(item.get("price_excl_vat") or "10"))
            for code in codes:
                h = _mix(key ^ zlib.crc32(f"{sku}@{code}".encode()))
                quantity = Decimal(h % 500_000) / 1000 if decimal else Decimal(h % 500)
                row: dict[str, Any] = {
                    "sku": sku,
                    "warehouse_code": code,
                    "quantity": str(quantity.quantize(_MILLI) if decimal else quantity),
                }
                if (h >> 20) % 3 == 0:
                    row["ordered_quantity"] = str(Decimal((h >> 24) % 100))
                row["unit_cost"] = str((price * Decimal("0.6")).quantize(_CENT, ROUND_HALF_UP))
                row["min_stock"] = str(Decimal((h >> 32) % 20))
                row["max_stock"] = str(Decimal(200 + (h >> 40) % 800))
                row["updated_at"] = stamp
                yield row


# The agent next to the ERP, as SyncStore calls it (orders in, stock out).
from erp_mapping.agent_server import AgentServer  # noqa: E402 - the sandbox registry's entry

register_sandbox("erp-agent", AgentServer)
