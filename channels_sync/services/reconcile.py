"""Channel-side reconciliation: read listings' stock back and compare it with what we pushed.

`channel_reconcile` reads every listing of a channel (not excluded) back through the
adapter's `fetch_stock`, in groups of `CHANNEL_RECONCILE_BATCH` keys (fewer where the
marketplace's read call takes fewer, see `Adapter.read_batches`), one rate-limit token per
call from the channel's shared bucket (the push's). Throttled answers wait (Retry-After,
else `CHANNEL_THROTTLE_WAIT_SECONDS`) and ask again, up to
`CHANNEL_RECONCILE_THROTTLE_BUDGET_SECONDS` of such waits per run: then the run stops
(`throttled`) and the next run reads the rest. Past the task's soft time limit the run stops
(`time_limit`) with what it read, its lock given back. The token is
refreshed as the push does (before the run, and once when a call is refused as expired).
One run per channel at a time (`RunLock`). A quantity outside 0..2^31-1 is no observation
(the adapters leave it out), and a listing whose observation fails is recorded in the
report's errors: one listing never stops the others. Webhook stock reports feed the same comparison
through `listing_observe` (see `webhooks.services.stock_reports`).

When a difference is a conflict (the rule, applied under the listing's row lock):

- every observation is recorded (`last_observed_quantity`/`_at`), unless a later one is
  recorded already (a late webhook never overwrites a newer read), and becomes what the
  channel shows as far as we know (`channel_quantity`, the push's expected quantity)
  unless a push was confirmed since the read began;
- it is compared only with what we last pushed, and only when that figure is settled: the
  listing is clean (no stock change waiting to be pushed), has a confirmed push
  (`last_pushed_quantity` is cleared while a push is in flight), that push was confirmed
  before the read began (a push confirmed since may or may not be in what was read), and
  no stock change touched the product since the read began (its `dirty_version` is the one
  seen before the read: a change whose push was found unnecessary leaves it clean again);
- a listing never pushed is recorded, never compared;
- a reconciliation run confirms each difference before opening a conflict: the listing is
  read again once `CHANNEL_RECONCILE_SETTLE_SECONDS` have passed since the first read, and
  the conflict opens only if the second read shows the same figure and the listing still
  qualifies against the first read's start. A sale on the marketplace that we have not
  applied yet moves its stock "behind our back" too; its notification normally arrives and
  is applied within that time, which marks the listing dirty (or pushes it) and so cancels
  the comparison. A difference that does not survive is counted `unconfirmed`.
- A conflict seen again is updated (`conflict_open`), never doubled.
- When the marketplace agrees with what we pushed again while a `stock_mismatch` conflict
  is open for the listing, the conflict is closed (`conflict_close_agreed`: status
  `auto_resolved`, no strategy, note "the channel agrees again"): its figures describe
  nothing anymore, and a resolution moving our stock by them would count a change twice.
  The run counts them (`conflicts_closed`). If the channel moves away again, the next
  comparison opens a new conflict.
"""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels_sync.adapters import Adapter, AdapterError, ObservedStock, Outcome
from channels_sync.models import Channel, ChannelListing, Conflict
from channels_sync.ratelimit import rate_limit_wait
from channels_sync.services.conflicts import conflict_close_agreed, conflict_open
from channels_sync.services.run_lock import RunLock
from channels_sync.services.tokens import (
    channel_adapter,
    channel_mark_reauth,
    channel_token_refresh,
)
from channels_sync.tasks import reconcile_channel
from core.errors import ServiceUnavailable

logger = structlog.get_logger(__name__)

RUN_LOCK_KEY = "channels_sync:reconcile_lock:{channel_id}"
# This many failed read calls in a row end a run (the marketplace is down).
FAILURE_STREAK = 3
# How each observation came out (`ListingObservation.outcome`).
MATCH = "match"
MISMATCH = "mismatch"
SKIPPED = "skipped"
STALE = "stale"


@dataclass(frozen=True)
class ListingObservation:
    """What `listing_observe` made of one observation."""

    outcome: str  # match, mismatch, skipped (not compared: `reason`), stale (older than one kept)
    reason: str = ""  # for skipped: dirty, never_pushed, pushed_since, changed_since
    conflict_id: int | None = None
    conflict_created: bool = False
    closed_conflict_id: int | None = None  # match: the stock conflict closed as agreed


@dataclass
class ReconcileReport:
    """What one reconciliation run of a channel did."""

    channel_id: int
    trigger: str
    read: int = 0  # listings whose stock came back
    matching: int = 0
    mismatched: int = 0  # confirmed differences (a conflict opened or updated)
    conflicts_opened: int = 0
    conflicts_updated: int = 0
    not_found: int = 0  # listings the marketplace did not return
    skipped: int = 0  # read and recorded, not compared (see the module)
    unconfirmed: int = 0  # differed once, not on the confirming read
    conflicts_closed: int = 0  # stock conflicts closed: the channel agrees again
    calls: int = 0
    throttled: int = 0
    waited_seconds: float = 0.0
    # why the run ended early: busy, inactive, needs_reauth, failing, throttled, time_limit, ...
    stopped: str = ""
    errors: list[str] = field(default_factory=list)
    not_found_ids: list[int] = field(default_factory=list)
    conflict_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["waited_seconds"] = round(self.waited_seconds, 3)
        data["errors"] = self.errors[:20]
        data["error_count"] = len(self.errors)
        data["not_found_ids"] = self.not_found_ids[:50]
        return data


class _Stop(Exception):
    """End the run (the reason is on the report)."""


def listing_observe(
    *,
    listing: ChannelListing | int,
    quantity: int,
    observed_at: datetime,
    source: str,
    read_started: datetime | None = None,
    version: int | None = None,
    open_conflict: bool = True,
    expected: int | None = None,
) -> ListingObservation:
    """Record a listing's quantity as the marketplace showed it; compare it with ours.

    Locks the listing's row; records the observation (unless a later one is kept), also as
    what the channel shows (`observation_fields`); compares
    it with the last pushed quantity under the rule of the module (`read_started`: when the
    read began, default `observed_at`; `version`: the listing's `dirty_version` seen before
    the read, if known). On a difference opens (or updates) the listing's `stock_mismatch`
    conflict with `source` (`reconciliation` or `webhook`), unless `open_conflict` is off (a
    first read that a second one will confirm) or `expected` is given and the figure is not
    it (the confirming read saw something else). When the figure is ours, closes the
    listing's open `stock_mismatch` conflict (`conflict_close_agreed`). Runs in the
    caller's transaction if any; enqueues nothing itself (the conflict's policy acts after
    the commit).
    """
    listing_id = listing.pk if isinstance(listing, ChannelListing) else listing
    read_started = read_started or observed_at
    with transaction.atomic():
        row = (
            ChannelListing.objects.select_for_update()
            .select_related("channel", "channel__vendor", "product")
            .filter(pk=listing_id)
            .first()
        )
        if row is None:
            return ListingObservation(outcome=SKIPPED, reason="gone")
        if row.last_observed_at is not None and row.last_observed_at > observed_at:
            return ListingObservation(outcome=STALE)
        ChannelListing.objects.filter(pk=row.pk).update(
            **observation_fields(row, quantity, observed_at=observed_at, read_started=read_started)
        )
        reason = _not_comparable(row, read_started=read_started, version=version)
        if reason:
            return ListingObservation(outcome=SKIPPED, reason=reason)
        if quantity == row.last_pushed_quantity:
            closed = conflict_close_agreed(listing=row, quantity=quantity)
            return ListingObservation(
                outcome=MATCH, closed_conflict_id=closed.pk if closed is not None else None
            )
        if not open_conflict:
            return ListingObservation(outcome=MISMATCH)
        if expected is not None and quantity != expected:
            return ListingObservation(outcome=SKIPPED, reason="moved_between_reads")
        conflict, created = conflict_open(
            kind=Conflict.Kind.STOCK_MISMATCH,
            vendor=row.channel.vendor,
            channel=row.channel,
            listing=row,
            product=row.product,
            source=source,
            ours=row.last_pushed_quantity,
            theirs=quantity,
            ours_at=row.last_pushed_at,
            theirs_at=observed_at,
            details={
                "desired_quantity": row.desired_quantity,
                "keys": {
                    "item": row.external_item_id,
                    "variant": row.external_variant_id,
                    "sku": row.external_sku,
                    "location": row.external_location_id,
                },
            },
        )
    logger.info(
        "reconcile.mismatch",
        listing_id=listing_id,
        channel_id=row.channel_id,
        ours=row.last_pushed_quantity,
        theirs=quantity,
        source=source,
        conflict_id=conflict.pk,
        created=created,
    )
    return ListingObservation(outcome=MISMATCH, conflict_id=conflict.pk, conflict_created=created)


def observation_fields(
    row: ChannelListing, quantity: int, *, observed_at: datetime, read_started: datetime
) -> dict:
    """The listing fields an observation writes: `last_observed_quantity`/`_at`, and what
    the channel shows as far as we know (`channel_quantity`), unless a push confirmed since
    the read began says something newer (the read may have seen the channel before it)."""
    fields = {"last_observed_quantity": quantity, "last_observed_at": observed_at}
    if row.last_pushed_at is None or row.last_pushed_at < read_started:
        fields["channel_quantity"] = quantity
    return fields


def _not_comparable(row: ChannelListing, *, read_started: datetime, version: int | None) -> str:
    """Why this observation must not be compared with our figure ('' when it may be)."""
    if row.dirty:
        return "dirty"  # a stock change is waiting to be pushed (or being pushed)
    if row.last_pushed_quantity is None or row.last_pushed_at is None:
        return "never_pushed"  # or a push in flight: its outcome is not known yet
    if row.last_pushed_at >= read_started:
        return "pushed_since"  # the read may have seen the marketplace before that push
    if version is not None and row.dirty_version != version:
        return "changed_since"  # a stock change since the read began (settled unpushed)
    return ""


def channel_reconcile(
    *, channel_id: int, trigger: str = "manual", settle_seconds: float | None = None
) -> ReconcileReport:
    """Read the channel's listings' stock back and compare it with what we pushed.

    `trigger` (schedule, api, admin, command, ...) is reported and logged. Differences are
    confirmed by a second read after `settle_seconds` (default
    `CHANNEL_RECONCILE_SETTLE_SECONDS`) before a conflict opens (see the module). Records
    `Channel.reconciled_at` when every listing was read. One run per channel at a time: a
    second one returns at once with `stopped="busy"`. Must not run inside a transaction (it
    calls the marketplace). Safe to run twice: a conflict seen again is updated.
    """
    report = ReconcileReport(channel_id=channel_id, trigger=trigger)
    channel = Channel.objects.filter(pk=channel_id).select_related("vendor").first()
    if channel is None:
        report.stopped = "missing"
        return report
    if not channel.active:
        report.stopped = "inactive"
        return report
    if channel.needs_reauth:
        report.stopped = "needs_reauth"
        return report
    lock = RunLock(
        RUN_LOCK_KEY.format(channel_id=channel_id), seconds=settings.CHANNEL_PUSH_LOCK_SECONDS
    )
    if not lock.acquire():
        report.stopped = "busy"
        return report
    try:
        settle = settings.CHANNEL_RECONCILE_SETTLE_SECONDS
        run = _Run(channel, report, lock, settle if settle_seconds is None else settle_seconds)
        run.go()
    except SoftTimeLimitExceeded:
        # Out of time: what was read is recorded already; the next run reads the rest.
        report.stopped = "time_limit"
    finally:
        lock.release()
    logger.info("reconcile.finished", **report.as_dict())
    return report


@dataclass
class _Suspect:
    """A listing whose first read differed from our figure, waiting for its second read."""

    listing_id: int
    keys: dict[str, str]
    quantity: int
    read_started: datetime
    version: int
    read_at: float  # time.monotonic() of the first read


class _Run:
    """One reconciliation run of one channel."""

    def __init__(
        self, channel: Channel, report: ReconcileReport, lock: RunLock, settle: float
    ) -> None:
        self.channel = channel
        self.report = report
        self.lock = lock
        self.settle = max(0.0, float(settle))
        self.adapter: Adapter = channel_adapter(channel)
        cls = type(self.adapter)
        self.rate = channel.rate_limit_per_second or cls.default_rate_per_second
        self.burst = channel.rate_limit_burst or cls.default_burst
        self.size = max(1, settings.CHANNEL_RECONCILE_BATCH)
        self.refreshed = False
        self.failure_streak = 0
        self.suspects: list[_Suspect] = []
        self.throttle_budget = max(0.0, settings.CHANNEL_RECONCILE_THROTTLE_BUDGET_SECONDS)
        self.throttle_waited = 0.0

    def go(self) -> None:
        report = self.report
        try:
            self._token_ready()
            after_id = 0
            page = max(self.size * 20, 1000)
            while True:
                rows = list(
                    ChannelListing.objects.filter(channel_id=self.channel.pk, id__gt=after_id)
                    .exclude(status=ChannelListing.Status.EXCLUDED)
                    .order_by("id")
                    .values_list("id", flat=True)[:page]
                )
                if not rows:
                    break
                after_id = rows[-1]
                self._page(rows)
            self._confirm()
        except _Stop:
            return
        if not report.stopped:
            Channel.objects.filter(pk=self.channel.pk).update(reconciled_at=timezone.now())

    def _token_ready(self) -> None:
        try:
            usable = channel_token_refresh(channel=self.channel, adapter=self.adapter)
        except AdapterError as exc:
            self.report.errors.append(f"token refresh: {exc}")
            self.report.stopped = "token_refresh_failed"
            raise _Stop from exc
        if not usable:
            self.report.stopped = "needs_reauth"
            raise _Stop

    def _page(self, listing_ids: list[int]) -> None:
        """Read a page of listings, group by group (each group is one read call)."""
        listings = {
            listing.pk: listing
            for listing in ChannelListing.objects.filter(pk__in=listing_ids).only(
                "id",
                "external_item_id",
                "external_variant_id",
                "external_sku",
                "external_location_id",
                "dirty_version",
            )
        }
        keyed = [(pk, self.adapter.keys_from_listing(listings[pk])) for pk in listing_ids]
        by_keys = {_keys_id(keys): pk for pk, keys in keyed}
        for group in self.adapter.read_batches([keys for _pk, keys in keyed], self.size):
            ids = [by_keys[_keys_id(keys)] for keys in group]
            # The versions seen before the read: a stock change after this moment makes the
            # comparison void (see the module).
            versions = dict(
                ChannelListing.objects.filter(pk__in=ids).values_list("id", "dirty_version")
            )
            read_started = timezone.now()
            observed = self._read(group)
            if observed is None:
                continue
            read_at = time.monotonic()
            seen = set()
            for item in observed:
                listing_id = by_keys.get(_keys_id(item.keys))
                if listing_id is None or listing_id in seen:
                    continue
                seen.add(listing_id)
                self.report.read += 1
                result = self._observe(
                    listing=listing_id,
                    quantity=item.quantity,
                    observed_at=timezone.now(),
                    source=Conflict.Source.RECONCILIATION,
                    read_started=read_started,
                    version=versions.get(listing_id),
                    open_conflict=False,
                )
                if result is None:
                    continue
                if result.outcome == MISMATCH:
                    self.suspects.append(
                        _Suspect(
                            listing_id,
                            item.keys,
                            item.quantity,
                            read_started,
                            versions.get(listing_id, 0),
                            read_at,
                        )
                    )
                else:
                    self._count(result)
            missing = [pk for pk in ids if pk not in seen]
            self.report.not_found += len(missing)
            self.report.not_found_ids.extend(missing)

    def _confirm(self) -> None:
        """Read the suspects again once they have settled; open the conflicts that hold."""
        if not self.suspects:
            return
        wait = self.settle - (time.monotonic() - self.suspects[-1].read_at)
        if wait > 0:
            self._sleep(wait)
        by_keys = {_keys_id(s.keys): s for s in self.suspects}
        for group in self.adapter.read_batches([s.keys for s in self.suspects], self.size):
            observed = self._read(group)
            if observed is None:
                self.report.unconfirmed += len(group)
                continue
            seen = set()
            for item in observed:
                suspect = by_keys.get(_keys_id(item.keys))
                if suspect is None or suspect.listing_id in seen:
                    continue
                seen.add(suspect.listing_id)
                result = self._observe(
                    listing=suspect.listing_id,
                    quantity=item.quantity,
                    observed_at=timezone.now(),
                    source=Conflict.Source.RECONCILIATION,
                    read_started=suspect.read_started,
                    version=suspect.version,
                    expected=suspect.quantity,
                )
                if result is None:
                    continue
                if result.outcome == MISMATCH:
                    self._count(result)
                elif result.outcome == MATCH:
                    self.report.unconfirmed += 1
                    self.report.conflicts_closed += int(result.closed_conflict_id is not None)
                else:
                    self.report.unconfirmed += 1
            self.report.unconfirmed += sum(
                1 for keys in group if by_keys[_keys_id(keys)].listing_id not in seen
            )

    def _observe(self, **observation) -> ListingObservation | None:
        """`listing_observe` for one listing; a failure is recorded on the report (None), so
        one listing never stops the others. Running out of time still ends the run."""
        try:
            return listing_observe(**observation)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:
            logger.exception(
                "reconcile.observe_failed",
                channel_id=self.channel.pk,
                listing_id=observation["listing"],
            )
            self.report.errors.append(
                f"listing {observation['listing']}: {type(exc).__name__}: {exc}"[:300]
            )
            return None

    def _count(self, result: ListingObservation) -> None:
        report = self.report
        if result.outcome == MATCH:
            report.matching += 1
            report.conflicts_closed += int(result.closed_conflict_id is not None)
        elif result.outcome == MISMATCH:
            report.mismatched += 1
            if result.conflict_created:
                report.conflicts_opened += 1
            else:
                report.conflicts_updated += 1
            if result.conflict_id is not None:
                report.conflict_ids.append(result.conflict_id)
        else:
            report.skipped += 1

    # --- one read call ----------------------------------------------------------------------

    def _read(self, group: Sequence[dict[str, str]]) -> list[ObservedStock] | None:
        """One read call under the rate limit; throttles wait, an expired token is refreshed
        once. None when the call failed (counted as an error; a streak ends the run)."""
        report = self.report
        while True:
            report.waited_seconds += rate_limit_wait(
                f"channel:{self.channel.pk}", rate=self.rate, burst=self.burst
            )
            if not self.lock.held():
                report.stopped = "lock_lost"
                raise _Stop
            report.calls += 1
            try:
                observed = self.adapter.fetch_stock(group)
            except AdapterError as exc:
                if exc.outcome == Outcome.THROTTLED:
                    report.throttled += 1
                    wait = exc.retry_after
                    wait = settings.CHANNEL_THROTTLE_WAIT_SECONDS if wait is None else wait
                    if self.throttle_waited + wait > self.throttle_budget:
                        # The marketplace keeps refusing: stop here, not wait without end.
                        report.stopped = "throttled"
                        raise _Stop from exc
                    self.throttle_waited += wait
                    self._sleep(wait)
                    continue
                if exc.outcome == Outcome.AUTH:
                    if not self.refreshed and self._refresh():
                        continue
                    reason = f"the marketplace refused the credentials ({exc})"
                    channel_mark_reauth(channel=self.channel, reason=reason)
                    report.errors.append(reason[:300])
                    report.stopped = "needs_reauth"
                    raise _Stop from exc
                report.errors.append(f"{exc.outcome}: {exc}"[:300])
                if exc.outcome == Outcome.RETRYABLE:
                    self.failure_streak += 1
                    if self.failure_streak >= FAILURE_STREAK:
                        report.stopped = "failing"
                        raise _Stop from exc
                return None
            self.failure_streak = 0
            return observed

    def _refresh(self) -> bool:
        self.refreshed = True
        if not self.adapter.credentials.get("refresh_token"):
            return False
        try:
            return channel_token_refresh(channel=self.channel, adapter=self.adapter, force=True)
        except AdapterError as exc:
            self.report.errors.append(f"token refresh: {exc}")
            self.report.stopped = "token_refresh_failed"
            raise _Stop from exc

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self.report.waited_seconds += seconds


def _keys_id(keys: dict[str, str]) -> tuple:
    """A hashable identity of a listing's keys (as the adapter names them)."""
    return tuple(sorted((name, str(value)) for name, value in keys.items()))


def channels_to_reconcile() -> list[int]:
    """The channels a scheduled reconciliation reads: active, not waiting for re-auth."""
    return list(
        Channel.objects.filter(active=True, needs_reauth=False)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def reconcile_enqueue(*, channel_ids: Sequence[int], trigger: str) -> list[int]:
    """Queue a reconciliation of each channel (`channels_sync.reconcile_channel`).

    A run already going for a channel makes the queued one return `busy`: harmless. When
    the queue cannot take a task, raises `ServiceUnavailable` naming the channels not
    queued (the others are). With no broker (eager mode) each run happens here and now.
    """
    queued, failed = [], []
    for channel_id in channel_ids:
        try:
            reconcile_channel.apply_async(kwargs={"channel_id": channel_id, "trigger": trigger})
        except Exception:
            logger.exception("reconcile.enqueue_failed", channel_id=channel_id)
            failed.append(channel_id)
            continue
        queued.append(channel_id)
    if failed:
        raise ServiceUnavailable(
            "The reconciliation could not be queued; the schedule reads the channel later.",
            details={"channel_ids": failed, "queued": queued},
        )
    return queued
