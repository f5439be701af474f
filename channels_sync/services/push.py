"""The desired-state push: make each dirty listing's marketplace quantity its desired one.

One run of `channel_push` takes the channel's dirty listings page by page, plans their
desired quantities (`selectors.plan`), skips those already showing it, and sends the rest
through the adapter in the channel's batch shape under the channel's shared rate limit.
Every call is a `PushAttempt` row. Outcomes:

- ok: the pushed quantity is stored and the dirty mark cleared (only if no stock change
  marked the listing again meanwhile: the mark's version must still be the planned one);
- per-item failure: that item alone is dead-lettered (or backs off, if the marketplace says
  to retry it); the rest of the batch is stored as pushed;
- throttled: wait (Retry-After, else `CHANNEL_THROTTLE_WAIT_SECONDS`) and send again; no
  attempt is used up. Past `CHANNEL_PUSH_INLINE_WAIT_SECONDS` of waiting the run stops and
  asks to be requeued;
- retryable: each listing of the batch backs off (exponential, full jitter) and is
  dead-lettered at the `CHANNEL_PUSH_MAX_ATTEMPTS`-th failure in a row; a streak of such
  failures ends the run early (the marketplace is down: no point sending the rest now);
- permanent: the batch's listings are dead-lettered;
- not applied (`ItemResult.requeue`: another item of the same call was refused and the
  marketplace applied none): the item stays dirty, no attempt is used up, and the run asks
  to be requeued soon. Only honoured when some item of the call failed for its own reason
  (a call whose every item says so is a retryable failure): the refused item is then
  dead-lettered, backing off or refused as stale, so the requeue cannot loop;
- stale (a channel with compare-and-set saw another quantity than the one we expected):
  no attempt is used up and nothing is dead-lettered; the observation is recorded, the
  listing stays dirty and, when it had a confirmed push, its stock-mismatch conflict opens
  (ours: the quantity sent; theirs: the one observed; `push_stale`). An observation equal
  to the desired quantity is our own earlier write: recorded as pushed; one equal to a
  quantity the listing was sent in a call not yet confirmed is our own late write too:
  recorded as shown, no conflict, and sent again at once expecting it (requeued);
- auth: the token is refreshed once and the batch sent again; if that fails too, the
  channel is flagged for re-authorisation (one alert) and nothing more is sent to it.

The expected quantity (compare-and-set channels, `StockUpdate.expected`) is what the
channel shows as far as we know (`ChannelListing.channel_quantity`): set by a confirmed push
and by every observation, never cleared before a send, so a call that failed leaves the
next one still expecting the last known figure (an edit made in the channel meanwhile is
refused, not overwritten; a timed-out write that landed comes back stale showing the
desired quantity: pushed). On such channels, after a stale refusal (or any observed
difference) the listing is planned again and its desired quantity sent, expecting the
observed one; the conflict stays open for staff, and once our quantity lands it is ours
in the listing's open stock-mismatch conflicts (the listing is clean: every strategy
applies, and the reconciliation compares it). See `push_stale`.

Push groups (`Adapter.push_group`, TikTok's warehouses of one SKU): when a listing of a group
is sent, the channel's other listings of that group go with it (planned at their desired
quantities, dirty or not, changed or not), in the same call (`batches` never splits a group).
Excluded listings of the group go as passengers (`StockUpdate.passenger`) at the figure the
channel shows as far as we know (last pushed, else last read back; left out when unknown,
for the adapter to read) and are never recorded as pushed. A member sent only to complete
its group (unchanged, or not dirty) is not at fault when the group is refused: it is neither
dead-lettered nor backed off, and keeps its status and last pushed quantity.

Every call's attempt row is committed, as `sending`, before the call goes out (the rows of
a round of `ROUND_CALLS` calls in one statement, before its first call; a run that stops
early deletes the rows of calls it did not make), and its answer is written with the
pushed quantities in one transaction right after the call: so every call the marketplace
saw has a row, and a run that dies (worker killed, time limit) leaves only the call in
flight unconfirmed. The next run marks the rows left `sending` `interrupted` and sends their
listings again (they stayed dirty). Because the target is a state, that repeat sets the
same absolute quantity: harmless, and bounded by one batch.

One run per channel at a time: `RunLock`, a short-lived cache key renewed by a heartbeat
while the run lives, so a dead run's lock lapses within `CHANNEL_PUSH_LOCK_SECONDS`.
"""

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels_sync import selectors
from channels_sync.adapters import (
    Adapter,
    AdapterError,
    CallResult,
    ItemResult,
    Outcome,
    StockUpdate,
)
from channels_sync.allocation import Allocation
from channels_sync.models import Channel, ChannelListing, PushAttempt
from channels_sync.ratelimit import rate_limit_wait
from channels_sync.selectors import PlannedListing
from channels_sync.services.push_stale import (
    OWN_WRITE,
    conflicts_ours_landed,
    listing_push_stale,
)
from channels_sync.services.run_lock import RunLock
from channels_sync.services.tokens import (
    channel_adapter,
    channel_mark_reauth,
    channel_token_refresh,
)
from core.correlation import get_correlation_id
from core.services import dead_letter_record
from core.task_base import backoff_seconds
from inventory.services.bulk import is_postgresql

logger = structlog.get_logger(__name__)

RUN_LOCK_KEY = "channels_sync:push_lock:{channel_id}"
DEAD_LETTER_TASK = "channels_sync.push_listing"
# Attempt rows are inserted (committed, `sending`) this many calls ahead, in one statement:
# a crash leaves at most this many rows without an answer, some never sent.
ROUND_CALLS = 20


class PushFailed(Exception):
    """A listing's push that failed for good (the dead letter's error)."""


@dataclass
class PushReport:
    """What one push run did."""

    channel_id: int
    dry_run: bool = False
    planned: int = 0
    pushed: int = 0
    unchanged: int = 0
    failed: int = 0
    throttled: int = 0
    retried: int = 0
    stale: int = 0  # refused by the channel's compare-and-set (see `push_stale`)
    requeued: int = 0  # not applied because another item of the call was refused
    dead_lettered: int = 0
    calls: int = 0
    waited_seconds: float = 0.0
    requeue_after: float | None = None
    stopped: str = ""  # why the run ended early: busy, inactive, needs_reauth, ...
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["waited_seconds"] = round(self.waited_seconds, 3)
        data["errors"] = self.errors[:20]
        return data

    def add(self, other: "PushReport") -> None:
        for name in (
            "planned",
            "pushed",
            "unchanged",
            "failed",
            "throttled",
            "retried",
            "stale",
            "requeued",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_lettered += other.dead_lettered
        self.calls += other.calls
        self.waited_seconds += other.waited_seconds
        self.errors.extend(other.errors)


class _Stop(Exception):
    """End the run (the reason is on the report)."""


def channel_push(
    *,
    channel_id: int,
    dry_run: bool | None = None,
    include_clean: bool = False,
    respect_backoff: bool = True,
) -> PushReport:
    """Push the channel's dirty listings now; return what happened.

    `dry_run` (default: the channel's own flag) computes and records desired quantities
    without sending. `include_clean` sends every listing, changed or not (a full resync).
    Only one run per channel at a time (a cache lock shared by all processes, see
    `RunLock`): a second one returns at once with `stopped="busy"`. Must not run inside a
    transaction: it calls the marketplace, and each call's attempt row is committed before
    the call.
    """
    report = PushReport(channel_id=channel_id)
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        report.stopped = "missing"
        return report
    report.dry_run = channel.dry_run if dry_run is None else dry_run
    if not channel.active:
        report.stopped = "inactive"
        return report
    if not report.dry_run and not channel.push_enabled:
        report.stopped = "push_disabled"
        return report
    if not report.dry_run and channel.needs_reauth:
        report.stopped = "needs_reauth"
        return report
    lock = RunLock(
        RUN_LOCK_KEY.format(channel_id=channel_id), seconds=settings.CHANNEL_PUSH_LOCK_SECONDS
    )
    if not lock.acquire():
        report.stopped = "busy"
        return report
    try:
        # Under the lock no other run is sending to this channel: a `sending` row is a call
        # whose run died before its answer was written.
        _attempts_interrupted(channel_id)
        run = _Run(channel, report, include_clean=include_clean, respect_backoff=respect_backoff)
        run.lock = lock
        run.go()
    finally:
        try:
            # A run cut short by an exception (its soft time limit, a database error) leaves
            # its call in flight unanswered. (A run that lost its lock leaves that to the
            # next holder: the `sending` row may be the new holder's.)
            if lock.held():
                _attempts_interrupted(channel_id)
        finally:
            lock.release()
    logger.info("push.finished", **report.as_dict())
    return report


class _Run:
    """One push run of one channel (state shared by its pages and batches)."""

    def __init__(
        self, channel: Channel, report: PushReport, *, include_clean: bool, respect_backoff: bool
    ) -> None:
        self.channel = channel
        self.report = report
        self.include_clean = include_clean
        self.respect_backoff = respect_backoff
        self.adapter: Adapter = channel_adapter(channel)
        cls = type(self.adapter)
        self.batch_size = channel.batch_size or cls.default_batch_size
        self.rate = channel.rate_limit_per_second or cls.default_rate_per_second
        self.burst = channel.rate_limit_burst or cls.default_burst
        self.refreshed = False
        self.failure_streak = 0
        self.lock: RunLock | None = None
        self.unsent: list[int] = []  # attempt rows inserted for calls not made yet
        # Listings this run pushed, at (dirty version, quantity): a group's sibling pushed
        # with an earlier page is not sent again by its own page unless it changed.
        self.sent: dict[int, tuple[int, int]] = {}
        # This page's listings sent only to complete their push group (see `_groups_completed`).
        self.pulled: set[int] = set()
        self.passengers: set[int] = set()

    def go(self) -> None:
        report = self.report
        try:
            if not report.dry_run:
                self._token_ready()
            after_id = 0
            while True:
                rows = selectors.listings_to_push(
                    self.channel,
                    include_clean=self.include_clean,
                    respect_backoff=self.respect_backoff,
                    after_id=after_id,
                    limit=settings.CHANNEL_PUSH_PAGE_SIZE,
                )
                if not rows:
                    break
                after_id = rows[-1]["id"]
                self._page(selectors.plan(self.channel, rows))
        except _Stop:
            pass
        Channel.objects.filter(pk=self.channel.pk).update(last_push_at=timezone.now())

    def _token_ready(self) -> None:
        try:
            usable = channel_token_refresh(channel=self.channel, adapter=self.adapter)
        except AdapterError as exc:
            self.report.errors.append(f"token refresh: {exc}")
            self.report.requeue_after = settings.CHANNEL_PUSH_RETRY_BASE_SECONDS
            self.report.stopped = "token_refresh_failed"
            raise _Stop from exc
        if not usable:
            self.report.stopped = "needs_reauth"
            raise _Stop

    # --- a page of planned listings -------------------------------------------------------

    def _page(self, planned: list[PlannedListing]) -> None:
        report = self.report
        report.planned += len(planned)
        to_send, unchanged = [], []
        for item in planned:
            (unchanged if self._unchanged(item) else to_send).append(item)
        to_send, unchanged = self._groups_completed(to_send, unchanged)
        report.unchanged += len(unchanged)
        if report.dry_run:
            self._record_dry_run(planned, to_send)
            return
        _listings_settle(unchanged, pushed=False)
        if to_send:
            # Until a send is confirmed, what the marketplace shows is unknown: a timeout
            # the marketplace applied anyway, or a crash before the results are written,
            # must not leave a stale "last pushed" that makes a later quantity look
            # unchanged. (`channel_quantity`, the expected quantity, stays: see the module.)
            # (A passenger is not ours to record, and a member pulled in at the quantity it
            # already shows is certain whatever the answer.)
            ChannelListing.objects.filter(
                pk__in=[
                    item.id
                    for item in to_send
                    if item.id not in self.passengers
                    and not (item.id in self.pulled and self._unchanged(item))
                ]
            ).update(last_pushed_quantity=None)
        by_id = {item.id: item for item in to_send}
        updates = [
            StockUpdate(
                listing_id=item.id,
                keys=self.adapter.keys_from_listing(item.row),
                quantity=item.quantity,
                expected=_expected(item),
                passenger=item.id in self.passengers,
            )
            for item in to_send
        ]
        calls = [
            ([by_id[update.listing_id] for update in batch], batch)
            for batch in self.adapter.batches(updates, self.batch_size)
        ]
        for start in range(0, len(calls), ROUND_CALLS):
            chunk = calls[start : start + ROUND_CALLS]
            self.unsent = _attempts_open(self.channel, [items for items, _ in chunk])
            try:
                for items, batch in chunk:
                    self._send(items, batch)
            finally:
                self._unsent_drop()

    def _unchanged(self, item: PlannedListing) -> bool:
        """Whether the channel shows the listing's planned quantity already (our last
        confirmed push, or this run sent it at this version); never in a full resync."""
        shown = item.quantity == item.row["last_pushed_quantity"] and not self.include_clean
        return shown or self.sent.get(item.id) == (item.row["dirty_version"], item.quantity)

    def _groups_completed(
        self, to_send: list[PlannedListing], unchanged: list[PlannedListing]
    ) -> tuple[list[PlannedListing], list[PlannedListing]]:
        """Add to the listings to send the rest of their push groups: the page's unchanged
        members, and the channel's other members (one query, then planned like a page).

        Members sent only to complete a group (the page's unchanged ones; others not dirty
        or unchanged) go in `self.pulled`; excluded members are passengers (`self.passengers`)
        at the figure the channel shows as far as we know, or left out when there is none
        (the adapter fills in what it must, see `Adapter.push_group`).
        """
        self.pulled, self.passengers = set(), set()
        if not to_send or not self.adapter.push_group_keys:
            return to_send, unchanged

        def group(item: PlannedListing) -> str | None:
            return self.adapter.push_group(self.adapter.keys_from_listing(item.row))

        wanted = {group(item) for item in to_send} - {None}
        if not wanted:
            return to_send, unchanged
        joining = [item for item in unchanged if group(item) in wanted]
        unchanged = [item for item in unchanged if group(item) not in wanted]
        siblings = selectors.listings_in_push_groups(
            self.channel,
            self.adapter,
            [item.row for item in (*to_send, *joining)],
            exclude_ids=[item.id for item in unchanged],
        )
        excluded = ChannelListing.Status.EXCLUDED
        planned = selectors.plan(
            self.channel, [row for row in siblings if row["status"] != excluded]
        )
        self.report.planned += len(planned)
        passengers = [
            PlannedListing(row, Allocation(known, "excluded: sent as the channel shows it"))
            for row in siblings
            if row["status"] == excluded and (known := row["channel_quantity"]) is not None
        ]
        self.pulled = {item.id for item in joining} | {
            item.id for item in planned if not item.row["dirty"] or self._unchanged(item)
        }
        self.passengers = {item.id for item in passengers}
        return [*to_send, *joining, *planned, *passengers], unchanged

    def _unsent_drop(self) -> None:
        """Delete the rows of calls this run will not make (it stops early)."""
        if not self.unsent:
            return
        unsent, self.unsent = self.unsent, []
        try:
            PushAttempt.objects.filter(pk__in=unsent).delete()
        except SoftTimeLimitExceeded:
            raise  # the run must stop at its soft limit, not carry on to the hard one
        except Exception:
            # Left as `sending`, the next run marks them interrupted.
            logger.exception("push.unsent_rows_left", channel_id=self.channel.pk)

    def _record_dry_run(self, planned: list[PlannedListing], to_send: list[PlannedListing]) -> None:
        # A channel in dry-run mode keeps its table current and its marks cleared; a one-off
        # dry run of a live channel changes nothing but the attempt rows.
        if self.channel.dry_run:
            _listings_settle(planned, pushed=False)
        rows = []
        for start in range(0, len(to_send), self.batch_size):
            chunk = to_send[start : start + self.batch_size]
            fields = _attempt_header(self.channel.pk, chunk, attempt=1)
            fields["outcome"] = PushAttempt.Outcome.DRY_RUN
            rows.append(PushAttempt(channel=self.channel, **fields))
        PushAttempt.objects.bulk_create(rows)

    # --- one batch --------------------------------------------------------------------------

    def _send(self, items: list[PlannedListing], batch: list[StockUpdate]) -> None:
        report = self.report
        attempt = _attempt_number(items)
        first = True
        while True:
            report.waited_seconds += rate_limit_wait(
                f"channel:{self.channel.pk}", rate=self.rate, burst=self.burst
            )
            self._keep_lock()
            if first and self.unsent:
                row_id = self.unsent.pop(0)  # this batch's row, inserted with its round
            else:  # the same batch sent again (after a throttle or a token refresh)
                row_id = _attempt_open(self.channel, items, attempt=attempt)
            first = False
            call_started = timezone.now()
            result = self.adapter.push_stock(batch, idempotency_key=_call_key(row_id, items))
            report.calls += 1
            if result.rate_per_second:
                # The marketplace named the rate that applies: keep under it from now on.
                self.rate = min(self.rate, result.rate_per_second)
            if result.outcome not in (Outcome.OK, Outcome.PARTIAL):
                _attempt_close(row_id, items, result)
            if result.outcome == Outcome.THROTTLED:
                report.throttled += 1
                wait = result.retry_after
                if wait is None:
                    wait = settings.CHANNEL_THROTTLE_WAIT_SECONDS
                if report.waited_seconds + wait > settings.CHANNEL_PUSH_INLINE_WAIT_SECONDS:
                    report.requeue_after = wait
                    report.stopped = "throttled"
                    raise _Stop
                time.sleep(wait)
                report.waited_seconds += wait
                continue
            if result.outcome == Outcome.AUTH:
                if self.refreshed or not self._refresh_after_auth(result):
                    self._auth_failed(result)
                    raise _Stop
                continue
            break
        if result.outcome in (Outcome.OK, Outcome.PARTIAL):
            self.failure_streak = 0
            self._items_done(row_id, items, result, call_started)
            return
        own = self._group_refused(items)
        if result.outcome == Outcome.RETRYABLE:
            self.failure_streak += 1
            if own:
                self._retry_later(own, result.error or "retryable error")
            if self.failure_streak >= settings.CHANNEL_PUSH_FAILURE_STREAK:
                report.stopped = "failing"
                raise _Stop
        elif own:  # permanent: sending the same request again cannot help
            self._dead_letter(own, result.error or "refused by the marketplace")

    def _group_refused(self, items: list[PlannedListing]) -> list[PlannedListing]:
        """Of refused items, return those whose refusal is their own; put the others back.

        A passenger is left as it is. A member pulled in only to complete its group gets its
        last pushed quantity back (cleared before the send) and, when that is its planned
        quantity, is settled as unchanged, as it would have been without the group.
        """
        own, pulled = [], []
        for item in items:
            if item.id in self.pulled:
                pulled.append(item)
            elif item.id not in self.passengers:
                own.append(item)
        for item in pulled:
            ChannelListing.objects.filter(pk=item.id).update(
                last_pushed_quantity=item.row["last_pushed_quantity"]
            )
        _listings_settle(
            [item for item in pulled if item.quantity == item.row["last_pushed_quantity"]],
            pushed=False,
        )
        return own

    def _keep_lock(self) -> None:
        """Stop before a call if the run lock is no longer ours (it lapsed, another run has it)."""
        if self.lock is not None and not self.lock.held():
            self.report.stopped = "lock_lost"
            raise _Stop

    def _refresh_after_auth(self, result: CallResult) -> bool:
        self.refreshed = True
        if not self.adapter.credentials.get("refresh_token"):
            return False
        try:
            return channel_token_refresh(channel=self.channel, adapter=self.adapter, force=True)
        except AdapterError as exc:
            self.report.errors.append(f"token refresh: {exc}")
            self.report.requeue_after = settings.CHANNEL_PUSH_RETRY_BASE_SECONDS
            self.report.stopped = "token_refresh_failed"
            raise _Stop from exc

    def _auth_failed(self, result: CallResult) -> None:
        reason = f"the marketplace refused the credentials ({result.error or result.http_status})"
        channel_mark_reauth(channel=self.channel, reason=reason)
        self.report.stopped = "needs_reauth"
        self.report.errors.append(reason)

    def _items_done(
        self,
        row_id: int,
        items: list[PlannedListing],
        result: CallResult,
        call_started: datetime | None = None,
    ) -> None:
        by_id = {item.id: item for item in items}
        answered = {item_result.listing_id: item_result for item_result in result.items}
        pushed, retry, dead, stale, requeue = [], [], [], [], []
        # Rows "not applied because another row was refused" are sent again for free only
        # when some row was refused for its own reason (that one is dead-lettered, backing
        # off or held next time): otherwise they would be requeued without end.
        own_failure = any(not r.ok and not r.requeue for r in result.items)
        for item in items:
            item_result = answered.get(item.id)
            if item.id in self.passengers:
                continue  # not ours: never recorded, whatever the answer
            if item_result is None or item_result.ok:
                # An item the answer does not mention was not refused: the call succeeded.
                pushed.append(item)
            elif item_result.stale and item_result.observed == item.quantity:
                # The channel shows what we want: an earlier write of ours (a call that
                # timed out) landed after all.
                pushed.append(item)
            elif item_result.stale:
                stale.append((item, item_result))
            elif item_result.requeue and own_failure:
                requeue.append(item)
            elif item_result.retryable:
                retry.append((by_id[item.id], item_result.error))
            else:
                dead.append((by_id[item.id], item_result.error))
        # The answer and what it confirms commit together: a crash after this leaves nothing
        # of this call to send again.
        with transaction.atomic():
            _attempt_close(row_id, items, result)
            _listings_settle(pushed, pushed=True, call_started=call_started)
        if self.adapter.compare_and_set:
            # The quantity we sent over the channel's figure is ours in its open conflicts.
            conflicts_ours_landed(self.channel, pushed)
        self.sent.update({item.id: (item.row["dirty_version"], item.quantity) for item in pushed})
        self.report.pushed += len(pushed)
        self.report.retried += sum(1 for item in pushed if item.row["push_failures"] > 0)
        own = {item.id for item in self._group_refused([item for item, _ in (*retry, *dead)])}
        for item, error in retry:
            if item.id in own:
                self._retry_later([item], error or "item refused, retry")
        for item, error in dead:
            if item.id in own:
                self._dead_letter([item], error or "item refused")
        for item, item_result in stale:
            self._stale(item, item_result, call_started or timezone.now())
        if requeue:
            # Left dirty, failures unchanged: the next run sends them again.
            self.report.requeued += len(requeue)
            self._requeue_soon()

    def _stale(self, item: PlannedListing, item_result: ItemResult, call_started: datetime) -> None:
        """A refusal by the channel's compare-and-set: no attempt used (see `push_stale`).

        A refusal showing our own unconfirmed write counts as requeued, not stale."""
        outcome = listing_push_stale(
            listing_id=item.id,
            desired=item.quantity,
            observed=item_result.observed,
            read_started=call_started,
            error=item_result.error,
        )
        if outcome == OWN_WRITE:
            self.report.requeued += 1
            self._requeue_soon()
            return
        self.report.stale += 1
        self.report.errors.append(f"listing {item.id}: stale: {item_result.error}"[:200])
        # Planned again: the next run sends the desired quantity expecting the observed
        # one; a second refusal in a row backs off.
        self._requeue_soon()

    def _requeue_soon(self) -> None:
        wait = settings.CHANNEL_PUSH_RETRY_BASE_SECONDS
        current = self.report.requeue_after
        self.report.requeue_after = wait if current is None else min(current, wait)

    def _retry_later(self, items: list[PlannedListing], error: str) -> None:
        limit = settings.CHANNEL_PUSH_MAX_ATTEMPTS
        now = timezone.now()
        again, dead = [], []
        for item in items:
            failures = item.row["push_failures"] + 1
            if failures >= limit:
                dead.append(item)
            else:
                again.append((item, failures))
        self.report.failed += len(again)
        self.report.errors.append(error[:200])
        shortest = None
        for item, failures in again:
            delay = backoff_seconds(
                failures - 1,
                base=settings.CHANNEL_PUSH_RETRY_BASE_SECONDS,
                cap=settings.CHANNEL_PUSH_RETRY_CAP_SECONDS,
            )
            shortest = delay if shortest is None else min(shortest, delay)
            ChannelListing.objects.filter(pk=item.id).update(
                push_failures=failures,
                next_push_at=now + timedelta(seconds=delay),
                last_error=error[:1000],
                updated_at=now,
            )
        if shortest is not None:
            current = self.report.requeue_after
            self.report.requeue_after = shortest if current is None else min(current, shortest)
        if dead:
            self._dead_letter(dead, f"gave up after {limit} attempts: {error}")

    def _dead_letter(self, items: list[PlannedListing], error: str) -> None:
        """Stop retrying these listings: status error, mark cleared, one dead letter each."""
        now = timezone.now()
        self.report.failed += len(items)
        self.report.dead_lettered += len(items)
        self.report.errors.append(error[:200])
        for item in items:
            # The count starts again: a new quantity is a new try.
            ChannelListing.objects.filter(pk=item.id).exclude(
                status=ChannelListing.Status.EXCLUDED
            ).update(
                status=ChannelListing.Status.ERROR,
                last_error=error[:1000],
                push_failures=0,
                next_push_at=None,
                updated_at=now,
            )
            # Cleared only if no stock change marked it again: a new quantity is a new try.
            ChannelListing.objects.filter(
                pk=item.id, dirty_version=item.row["dirty_version"]
            ).update(dirty=False, dirty_since=None)
            dead_letter_record(
                source="channels_sync",
                task_name=DEAD_LETTER_TASK,
                kwargs={"listing_id": item.id},
                error=PushFailed(f"{self.channel.name}: listing {item.id}: {error}"),
                attempts=item.row["push_failures"] + 1,
            )


def _attempt_open(channel: Channel, items: list[PlannedListing], *, attempt: int) -> int:
    """Commit the `sending` attempt row of a call about to be made; return its id."""
    return PushAttempt.objects.create(
        channel=channel, **_attempt_header(channel.pk, items, attempt=attempt)
    ).pk


def _attempts_open(channel: Channel, calls: list[list[PlannedListing]]) -> list[int]:
    """Commit the `sending` rows of the next calls in one statement; return their ids."""
    rows = PushAttempt.objects.bulk_create(
        PushAttempt(
            channel=channel,
            **_attempt_header(channel.pk, items, attempt=_attempt_number(items)),
        )
        for items in calls
    )
    return [row.pk for row in rows]


def _attempt_number(items: list[PlannedListing]) -> int:
    """A batch's attempt: one more than the most failures in a row of any of its listings."""
    return 1 + max(item.row["push_failures"] for item in items)


def _attempt_close(row_id: int, items: list[PlannedListing], result: CallResult) -> None:
    """Write a call's answer over its `sending` row."""
    PushAttempt.objects.filter(pk=row_id).update(**_attempt_answer(items, result))


def _attempts_interrupted(channel_id: int) -> int:
    """Mark the calls a dead run of the channel left unanswered (run under its lock)."""
    return PushAttempt.objects.filter(
        channel_id=channel_id, outcome=PushAttempt.Outcome.SENDING
    ).update(outcome=PushAttempt.Outcome.INTERRUPTED)


def _attempt_header(channel_id: int, items: list[PlannedListing], *, attempt: int) -> dict:
    """What an attempt row knows before the call: the items, the key, the attempt number."""
    return {
        "items": [{"listing": item.id, "quantity": item.quantity} for item in items],
        "item_count": len(items),
        "idempotency_key": _idempotency_key(channel_id, items),
        "outcome": PushAttempt.Outcome.SENDING,
        "correlation_id": get_correlation_id() or "",
        "attempt": min(attempt, 32767),
        "created_at": timezone.now(),
    }


def _attempt_answer(items: list[PlannedListing], result: CallResult) -> dict:
    """What the answer adds to an attempt row: the outcome and any per-item refusals."""
    fields = {
        "outcome": result.outcome.value,
        "http_status": result.http_status,
        "latency_ms": result.latency_ms,
        "error": (result.error or "")[:1000],
    }
    refused = {
        item_result.listing_id: item_result for item_result in result.items if not item_result.ok
    }
    if refused:
        rows = []
        for item in items:
            row = {"listing": item.id, "quantity": item.quantity}
            item_result = refused.get(item.id)
            if item_result is not None:
                row["ok"] = False
                row["error"] = item_result.error[:200]
            rows.append(row)
        fields["items"] = rows
    return fields


def _expected(item: PlannedListing) -> int | None:
    """What the channel shows for a listing as far as we know (`channel_quantity`: the last
    confirmed push or a later observation; a failed call leaves it as it was)."""
    return item.row["channel_quantity"]


def _call_key(row_id: int, items: list[PlannedListing]) -> str:
    """The idempotency key sent with one call: unique to its attempt row (a UUID)."""
    content = f"syncstore:push:{row_id}:{_idempotency_key(0, items)}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, content))


def _idempotency_key(channel_id: int, items: list[PlannedListing]) -> str:
    """The same listings at the same versions and quantities give the same key."""
    content = [channel_id, [(item.id, item.row["dirty_version"], item.quantity) for item in items]]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _listings_settle(
    items: list[PlannedListing], *, pushed: bool, call_started: datetime | None = None
) -> None:
    """Store the desired (and, if `pushed`, the pushed) quantities; clear unchanged marks.

    One statement per page: the dirty mark is cleared only where the version is still the
    planned one, so a stock change committed meanwhile keeps its listing dirty. A pushed
    quantity becomes what the channel shows (`channel_quantity`) only where no observation
    was recorded since the call began (`call_started`: a stock webhook processed during the
    call is newer knowledge). `last_pushed_at` is the confirmation's time, not the call's
    start: the reconciliation and observations take a read begun before it as possibly
    older than the push (a read begun during the call may have seen the channel before
    the write landed).
    """
    if not items:
        return
    now = timezone.now()
    table = ChannelListing._meta.db_table
    values = [
        (item.id, item.row["dirty_version"], item.quantity, item.allocation.reason[:200])
        for item in items
    ]
    pushed_sql = (
        "last_pushed_quantity = v.quantity, "
        "channel_quantity = CASE WHEN l.last_observed_at IS NULL OR l.last_observed_at < %s "
        "THEN v.quantity ELSE l.channel_quantity END, "
        "last_pushed_at = %s, push_failures = 0, "
        "next_push_at = NULL, last_error = '', push_stale_streak = 0, "
        "status = CASE WHEN l.status = 'excluded' THEN l.status ELSE 'ok' END, "
        if pushed
        else ""
    )
    head = [call_started or now, now] if pushed else []
    for start in range(0, len(values), 1000):
        chunk = values[start : start + 1000]
        row_sql = "(%s, %s, %s, %s)"
        if is_postgresql():
            row_sql = "(%s::bigint, %s::bigint, %s::integer, %s::varchar)"
        placeholders = ", ".join([row_sql] * len(chunk))
        params = [value for row in chunk for value in row]
        # No savepoint of its own: inside a caller's transaction it stands or falls with it.
        with transaction.atomic(savepoint=False), connection.cursor() as cursor:
            if is_postgresql():
                # Lock in id order first, as the dirty marks do: no cycle with them.
                ids = [row[0] for row in chunk]
                cursor.execute(
                    f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [ids]
                )
            cursor.execute(
                f"UPDATE {table} AS l SET {pushed_sql}"
                f"desired_quantity = v.quantity, desired_reason = v.reason, updated_at = %s, "
                f"dirty = CASE WHEN l.dirty_version = v.version THEN %s ELSE l.dirty END, "
                f"dirty_since = CASE WHEN l.dirty_version = v.version THEN NULL "
                f"ELSE l.dirty_since END "
                f"FROM (SELECT column1 AS id, column2 AS version, column3 AS quantity, "
                f"column4 AS reason FROM (VALUES {placeholders}) AS vals) AS v "
                f"WHERE l.id = v.id",
                [*head, now, False, *params],
            )
