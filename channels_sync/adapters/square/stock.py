"""Square stock pushes: one BatchChangeInventory call of PHYSICAL_COUNT changes, its answer
classified, and the isolation of changes Square refuses without naming them.

BatchChangeInventory (https://developer.squareup.com/reference/square/inventory-api/
batch-change-inventory) is all or nothing: a refusal applies no change of the batch. A
refusal usually names the change at fault in its errors' `field` (`changes[3].physical_
count.quantity`); when it names none, the batch is sent again in halves, within the same
push call, until the refused changes stand alone (`stock_push`). Only a refusal of Square's
own (error rows, all of category `INVALID_REQUEST_ERROR`: "Handling errors",
https://developer.squareup.com/docs/build-basics/handling-errors) is isolated: a 4xx without
them (a proxy's HTML 404 or 413) says nothing about the changes, and stays one permanent
failure of the batch. The calls are paced (`ISOLATION_PAUSE_SECONDS` apart), and a part
throttled or failing as a whole ends the isolation: what is not settled is retryable. Each
of those calls has its
own idempotency key, derived from the push's: Square refuses a key reused with another
body (`IDEMPOTENCY_KEY_REUSED`), and a resend of the same half with the same key is
harmless.
"""

import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog

from channels_sync.adapters.base import (
    Adapter,
    CallResult,
    ItemResult,
    Outcome,
    StockUpdate,
    answer_json,
)
from channels_sync.adapters.square.wire import (
    body_json,
    change_index,
    error_text,
    errors_of,
    whole_call_outcome,
)
from core.http import OutboundError

logger = structlog.get_logger(__name__)

CHANGES_PATH = "/v2/inventory/changes/batch-create"
# At most this many extra calls isolate the changes of one refused batch: a single refused
# change among 100 takes about 14 (two halves a level, seven levels).
ISOLATION_CALLS_MAX = 24
# The pause between two isolating calls: a burst of them would spend the seller's rate
# limit (Square answers RATE_LIMITED past it) that other pushes and reads need as well.
ISOLATION_PAUSE_SECONDS = 0.1
# Errors naming these request fields refuse the request itself: halves would be refused too.
REQUEST_FIELDS = frozenset({"idempotency_key", "changes", "ignore_unchanged_counts"})


def sub_key(key: str, path: str) -> str:
    """The idempotency key of a part of the call keyed `key` (`path`: which halves)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"syncstore:square-batch:{key}:{path}"))


def stock_push(
    adapter: Adapter, updates: Sequence[StockUpdate], *, key: str, stamp: str
) -> CallResult:
    """Send the changes (see `SquareAdapter.push_stock`); never raises.

    A refusal (4xx) of a batch of more than one change naming no change is isolated: the
    batch goes again in halves, and halves of the refused halves, each part with its own key
    (`sub_key`), at most `ISOLATION_CALLS_MAX` calls. A change refused alone fails for
    good; changes applied in a part are `ok`; changes whose part could not be settled within
    the bound, or whose part failed as a whole (throttled, 5xx, auth), are retryable items.
    """
    first, unattributed = _send(adapter, updates, key=key, stamp=stamp)
    if not unattributed or len(updates) < 2:
        return first
    logger.info("square.batch_isolate", changes=len(updates), error=first.error[:200])
    return _isolate(adapter, updates, key=key, stamp=stamp, first=first)


def _isolate(
    adapter: Adapter,
    updates: Sequence[StockUpdate],
    *,
    key: str,
    stamp: str,
    first: CallResult,
) -> CallResult:
    settled: dict[int, ItemResult] = {}
    parts: deque[tuple[str, list[int]]] = deque(_halves("", list(range(len(updates)))))
    calls = 0
    latency = first.latency_ms or 0
    status = first.http_status
    stop = ""
    while parts:
        path, group = parts.popleft()
        if stop or calls >= ISOLATION_CALLS_MAX:
            reason = stop or f"not isolated within {ISOLATION_CALLS_MAX} calls: {first.error}"
            for index in group:
                settled[index] = _retry(updates[index], reason)
            continue
        calls += 1
        time.sleep(ISOLATION_PAUSE_SECONDS)
        part = [updates[index] for index in group]
        result, unattributed = _send(adapter, part, key=sub_key(key, path), stamp=stamp)
        latency += result.latency_ms or 0
        status = result.http_status or status
        if result.outcome == Outcome.OK:
            settled.update({index: _ok(updates[index]) for index in group})
        elif unattributed and len(group) > 1:
            parts.extend(_halves(path, group))
        elif unattributed or result.outcome == Outcome.PERMANENT:
            error = f"refused: {result.error}"[:500]
            settled.update(
                {
                    index: ItemResult(updates[index].listing_id, ok=False, error=error)
                    for index in group
                }
            )
        elif result.outcome == Outcome.PARTIAL:
            rest = []
            for index, item in zip(group, result.items, strict=True):
                if item.retryable:
                    rest.append(index)
                else:
                    settled[index] = item
            if rest:
                parts.append((f"{path}r", rest))
        else:
            # The part failed as a whole (throttled, 5xx, auth): stop calling; what is not
            # settled goes again with the push's next attempt.
            stop = f"not applied ({result.outcome}): {result.error}"[:500]
            for index in group:
                settled[index] = _retry(updates[index], stop)
    items = [settled[index] for index in range(len(updates))]
    failed = [item for item in items if not item.ok]
    logger.info(
        "square.batch_isolated",
        changes=len(updates),
        calls=calls,
        refused=sum(1 for item in failed if not item.retryable),
        retry=sum(1 for item in failed if item.retryable),
    )
    return CallResult(
        outcome=Outcome.PARTIAL if failed else Outcome.OK,
        http_status=status,
        items=items,
        error=failed[0].error if failed else "",
        latency_ms=latency,
    )


def _halves(path: str, group: list[int]) -> list[tuple[str, list[int]]]:
    middle = len(group) // 2
    return [(f"{path}0", group[:middle]), (f"{path}1", group[middle:])]


def _ok(update: StockUpdate) -> ItemResult:
    return ItemResult(listing_id=update.listing_id, ok=True)


def _retry(update: StockUpdate, reason: str) -> ItemResult:
    return ItemResult(listing_id=update.listing_id, ok=False, retryable=True, error=reason[:500])


def _send(
    adapter: Adapter, updates: Sequence[StockUpdate], *, key: str, stamp: str
) -> tuple[CallResult, bool]:
    """One BatchChangeInventory call: (its result, whether it is a 4xx refusal of Square's
    naming no change, which isolating the changes could settle)."""
    body = body_json(
        {
            "idempotency_key": key,
            "changes": [
                {
                    "type": "PHYSICAL_COUNT",
                    "physical_count": {
                        "reference_id": f"syncstore-listing-{update.listing_id}",
                        "catalog_object_id": str(update.keys["catalog_object_id"]),
                        "location_id": str(update.keys["location_id"]),
                        "state": "IN_STOCK",
                        "quantity": str(max(int(update.quantity), 0)),
                        "occurred_at": stamp,
                    },
                }
                for update in updates
            ],
            "ignore_unchanged_counts": True,
        }
    )
    started = time.perf_counter()
    try:
        response, latency_ms = adapter._call("POST", CHANGES_PATH, body)
    except OutboundError as exc:
        return adapter.transport_failure(exc, int((time.perf_counter() - started) * 1000)), False
    return _classify(adapter, response, updates, latency_ms, stamp)


def _classify(
    adapter: Adapter, response: Any, updates: Sequence[StockUpdate], latency_ms: int, stamp: str
) -> tuple[CallResult, bool]:
    status = response.status_code
    answer = answer_json(response)
    error = adapter.excerpt(response.content)
    outcome, token_expired = whole_call_outcome(status, answer)
    if outcome is not None:
        failed = adapter.call_failed(
            outcome, response, error=error, latency_ms=latency_ms, token_expired=token_expired
        )
        return failed, False
    errors = errors_of(answer)
    if not errors and 200 <= status < 300:
        items = [ItemResult(listing_id=u.listing_id, ok=True) for u in updates]
        return CallResult(Outcome.OK, status, items=items, latency_ms=latency_ms), False
    if any("occurred_at" in row["field"] or "occurred_at" in row["detail"] for row in errors):
        # Our stamp is "the time of the call": only a clock apart from Square's (ours ahead:
        # "in the future") makes Square refuse it. The items are not at fault: the call is
        # retryable, and the clock needs fixing (NTP) for pushes to get through.
        logger.warning(
            "square.clock_ahead", stamp=stamp, detail=[error_text(r) for r in errors][:3]
        )
        failed = adapter.call_failed(
            Outcome.RETRYABLE, response, error=error, latency_ms=latency_ms
        )
        return failed, False
    refused: dict[int, list[str]] = {}
    placed = True
    for row in errors:
        index = change_index(row["field"])
        if index is None or index >= len(updates):
            placed = False
            continue
        refused.setdefault(index, []).append(error_text(row))
    if not placed or not refused:
        whole = adapter.call_failed(Outcome.PERMANENT, response, error=error, latency_ms=latency_ms)
        request_level = any(row["field"] in REQUEST_FIELDS for row in errors)
        squares = bool(errors) and all(row["category"] == "INVALID_REQUEST_ERROR" for row in errors)
        return whole, 400 <= status < 500 and squares and not request_level
    named = ", ".join(f"changes[{i}]" for i in sorted(refused))
    items = []
    for index, update in enumerate(updates):
        if index in refused:
            items.append(
                ItemResult(update.listing_id, ok=False, error="; ".join(refused[index])[:500])
            )
        else:
            items.append(
                ItemResult(
                    update.listing_id,
                    ok=False,
                    retryable=True,
                    error=f"not applied: Square refused the whole batch over {named}"[:500],
                )
            )
    result = CallResult(Outcome.PARTIAL, status, items=items, error=error, latency_ms=latency_ms)
    return result, False
