"""What every marketplace sandbox shares: the shop's stock, tokens, faults, call timing.

A marketplace sandbox checks signatures and tokens with its own code (never the adapter's),
keeps a quantity per listing, answers in the marketplace's success, per-item failure and
throttle shapes, issues and refreshes tokens, and injects faults when configured:

- `error_ratio`: the share of stock calls answered with a server error (0..1);
- `throttle_per_second`: at most this many stock calls per rolling second are accepted, the
  rest get the marketplace's throttle answer (None: no limit);
- `latency`: seconds to wait before answering a stock call;
- `timeout_ratio` / `timeout_seconds`: the share of stock calls that hang that long;
- `reject`: listing keys (objects, as the adapter names them) whose updates fail per item;
- `token_lifetime`: seconds an issued access token lives.

Faults draw from a seeded random generator (`seed`), so a run can be repeated.
`expire_tokens()` makes every issued access token expired (refresh still works);
`revoke()` makes every token and refresh token invalid (only a new authorisation helps).
"""

import random
import secrets
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse

_OPTIONS = {
    "error_ratio": 0.0,
    "throttle_per_second": None,
    "latency": 0.0,
    "timeout_ratio": 0.0,
    "timeout_seconds": 5.0,
    "reject": [],
    "token_lifetime": 4 * 3600,
    "seed": 0,
}


class MarketplaceSandbox(SandboxApp):
    """The shared state and fault machinery of the marketplace sandboxes.

    Subclasses define `key_names` (the listing key names, in order, that identify a stock
    entry) and the marketplace's routes in `handle`, calling `gate()` before applying a
    stock call and `token_state()` to check an access token.
    """

    name = "marketplace"
    key_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, Any] = dict(_OPTIONS)
        self.rng = random.Random(0)  # noqa: S311 - fault injection, not security
        self.stock: dict[tuple[str, ...], int] = {}
        self.access_tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self.refresh_tokens: set[str] = set()
        self.stock_call_times: list[float] = []  # accepted stock calls (monotonic)
        self.call_times: list[float] = []  # every stock call that reached the gate
        self._window: deque[float] = deque()
        self.counts = {"stock_calls": 0, "throttled": 0, "errors": 0, "timeouts": 0}
        self.counts |= {"auth_refused": 0, "bad_signature": 0, "items_rejected": 0}
        self.counts |= {"refreshes": 0}

    # --- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.options = dict(_OPTIONS)
            self.rng = random.Random(0)  # noqa: S311
            self.stock.clear()
            self.access_tokens.clear()
            self.refresh_tokens.clear()
            self.stock_call_times.clear()
            self.call_times.clear()
            self._window.clear()
            self.counts = dict.fromkeys(self.counts, 0)

    def configure(self, **options: Any) -> dict:
        unknown = sorted(set(options) - set(_OPTIONS) - {"listings"})
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)}")
        listings = options.pop("listings", None)
        for name in ("error_ratio", "timeout_ratio"):
            if name in options and not 0 <= float(options[name]) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if "reject" in options and not isinstance(options["reject"], list):
            raise ValueError("reject must be a list of listing keys")
        with self._lock:
            self.options.update(options)
            if "seed" in options:
                self.rng = random.Random(options["seed"])  # noqa: S311
        if listings is not None:
            self.seed_listings(listings)
        return {**self.options, "listings": len(self.stock)}

    def key_of(self, keys: dict[str, Any]) -> tuple[str, ...]:
        """The stock entry a listing's keys name (an integer id and its string are one key).

        Only a missing or null key is empty: 0 is a real id (Shopee's item without models).
        """
        return tuple("" if keys.get(name) is None else str(keys[name]) for name in self.key_names)

    def seed_listings(self, listings: Iterable[dict[str, Any]], quantity: int = 0) -> None:
        """Make listings known to the shop (each a dict of keys, optionally `quantity`)."""
        with self._lock:
            for listing in listings:
                self.stock.setdefault(self.key_of(listing), int(listing.get("quantity", quantity)))

    def quantity(self, keys: dict[str, Any]) -> int | None:
        """A listing's quantity as the shop holds it (None: unknown listing)."""
        return self.stock.get(self.key_of(keys))

    def is_rejected(self, keys: dict[str, Any]) -> bool:
        wanted = self.key_of(keys)
        return any(self.key_of(rejected) == wanted for rejected in self.options["reject"])

    # --- tokens ---------------------------------------------------------------------------------

    def issue_tokens(self) -> tuple[str, str, int]:
        """A new access token and refresh token; returns (access, refresh, lifetime s)."""
        access = secrets.token_hex(16)
        refresh = secrets.token_hex(16)
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
            self.refresh_tokens.add(refresh)
        return access, refresh, lifetime

    def token_state(self, token: str | None) -> str:
        """'ok', 'expired' or 'invalid'."""
        expiry = self.access_tokens.get(token or "")
        if expiry is None:
            return "invalid"
        return "ok" if expiry > time.time() else "expired"

    def refresh_consume(self, refresh: str | None, *, single_use: bool) -> bool:
        """Whether a refresh token is valid (and, if single use, spend it)."""
        with self._lock:
            if not refresh or refresh not in self.refresh_tokens:
                return False
            if single_use:
                self.refresh_tokens.discard(refresh)
            self.counts["refreshes"] += 1
            return True

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self.access_tokens:
                self.access_tokens[token] = time.time() - 1

    def revoke(self) -> None:
        with self._lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def credentials(self) -> dict[str, Any]:
        """Channel credentials this sandbox accepts, with freshly issued tokens."""
        raise NotImplementedError

    # --- faults ---------------------------------------------------------------------------------

    def gate(self) -> str | None:
        """Decide the fate of a stock call before it is applied.

        Returns None (go on), 'throttle' or 'error'; sleeps for latency and timeouts. An
        accepted call's time is recorded (for the rate the sandbox saw).
        """
        options = self.options
        with self._lock:
            self.call_times.append(time.monotonic())
        if options["latency"]:
            time.sleep(float(options["latency"]))
        with self._lock:
            roll_timeout = self.rng.random() < float(options["timeout_ratio"])
        if roll_timeout:
            with self._lock:
                self.counts["timeouts"] += 1
            time.sleep(float(options["timeout_seconds"]))
            return "error"
        now = time.monotonic()
        with self._lock:
            limit = options["throttle_per_second"]
            if limit is not None:
                while self._window and now - self._window[0] >= 1.0:
                    self._window.popleft()
                if len(self._window) >= float(limit):
                    self.counts["throttled"] += 1
                    return "throttle"
                self._window.append(now)
            if self.rng.random() < float(options["error_ratio"]):
                self.counts["errors"] += 1
                return "error"
            self.counts["stock_calls"] += 1
            self.stock_call_times.append(now)
        return None

    def max_calls_in_window(self, window: float = 1.0, *, accepted_only: bool = False) -> int:
        """The most stock calls (or only accepted ones) seen in any `window` seconds."""
        times = sorted(self.stock_call_times if accepted_only else self.call_times)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _control(self, request: SandboxRequest) -> SandboxResponse:
        action = request.path.removeprefix("/_sandbox/").strip("/")
        if action == "stock" and request.method == "GET":
            with self._lock:
                rows = [
                    {**dict(zip(self.key_names, key, strict=True)), "quantity": quantity}
                    for key, quantity in self.stock.items()
                ]
            return SandboxResponse.json(200, rows)
        if action == "expire-tokens" and request.method == "POST":
            self.expire_tokens()
            return SandboxResponse.json(200, {"expired": True})
        if action == "revoke" and request.method == "POST":
            self.revoke()
            return SandboxResponse.json(200, {"revoked": True})
        if action == "credentials" and request.method == "POST":
            # Fresh credentials for a new channel, for a sandbox in another process.
            return SandboxResponse.json(200, self.credentials())
        if action == "counts" and request.method == "GET":
            return SandboxResponse.json(200, dict(self.counts))
        return super()._control(request)
