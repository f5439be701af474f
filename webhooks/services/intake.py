"""The webhook intake: verify the signature, store the event once, answer at once.

This is the hot path, so it costs one INSERT per new notification and nothing more on the
database in the steady state: the channel (with its adapter, which checks signatures) is
kept in process memory for a few seconds (`WEBHOOK_CHANNEL_CACHE_SECONDS`), a signature
that fails against the kept copy is checked again against a fresh read (a secret just
rotated is honoured at once; under a flood of bad signatures, at most one read every
`WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS` per channel, and the failures are counted in the
shared cache, reaching the channel's row at most that often), and the channel's "last
webhook received" is written at most once a minute per process, by a conditional UPDATE
(never a hot-row write per request).

Whatever the adapter reads from a verified body, the intake never fails on it: a field that
PostgreSQL cannot store (NUL, a lone surrogate), that is not text or that is too long for its
column sends the event down the `unreadable` path (kept under the body's digest, ignored),
never truncated, so an order id is stored whole or not at all.
"""

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels_sync.adapters import Adapter, ChannelEvent
from channels_sync.models import Channel
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.signature_failures import channel_signature_failure_record
from channels_sync.services.tokens import channel_adapter
from core.correlation import get_correlation_id
from core.errors import DomainError, NotFoundError
from webhooks.metrics import SIGNATURE_FAILURES, WEBHOOKS
from webhooks.models import WebhookEvent
from webhooks.services.replays import nonce_claim, nonce_release, replay_stored
from webhooks.tasks import process_event

logger = structlog.get_logger(__name__)

# Headers kept with an event, for whoever investigates it. Never the signature.
KEPT_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Real-IP")
LAST_RECEIVED_EVERY = timedelta(minutes=1)
TOPIC_ORDER = "order"
TOPIC_STOCK = "stock"
TOPIC_UNREADABLE = "unreadable"
# The topics processed (the rest are kept, marked ignored).
PROCESSED_TOPICS = frozenset({TOPIC_ORDER, TOPIC_STOCK})

_FIELD_LIMITS = {"topic": 50, "event_key": 200, "order_id": 100, "notified_status": 100}


@dataclass(frozen=True)
class IntakeChannel:
    """What the intake needs of a channel, kept briefly in process memory."""

    id: int
    type: str
    active: bool
    adapter: Adapter
    webhook_url: str
    expires: float  # time.monotonic() after which it is read again


@dataclass(frozen=True)
class IntakeResult:
    """What became of one inbound webhook, and the answer the marketplace wants."""

    event_id: int | None  # None for a duplicate
    duplicate: bool
    topic: str
    ack: tuple[int, bytes, str]  # (status, body, content type)


_channels: dict[int, IntakeChannel] = {}
_last_touched: dict[int, float] = {}  # channel id -> time.monotonic() of the last write
# channel id -> time.monotonic() of the last read caused by a signature that failed
_reread_at: dict[int, float] = {}


def intake_cache_clear() -> None:
    """Forget the kept channels and last-received writes (tests; a channel's secret changed)."""
    _channels.clear()
    _last_touched.clear()
    _reread_at.clear()


def _channel_load(channel_id: int) -> IntakeChannel | None:
    channel = (
        Channel.objects.only(
            "id", "type", "active", "base_url", "auth_base_url", "credentials", "options"
        )
        .filter(pk=channel_id)
        .first()
    )
    if channel is None:
        _channels.pop(channel_id, None)
        return None
    kept = IntakeChannel(
        id=channel.pk,
        type=channel.type,
        active=channel.active,
        adapter=channel_adapter(channel),
        webhook_url=channel_webhook_url(channel),
        expires=time.monotonic() + settings.WEBHOOK_CHANNEL_CACHE_SECONDS,
    )
    _channels[channel_id] = kept
    return kept


def _channel_get(channel_id: int) -> IntakeChannel | None:
    kept = _channels.get(channel_id)
    if kept is not None and kept.expires > time.monotonic():
        return kept
    # Unknown ids are not kept: a channel made a moment ago is found at once.
    return _channel_load(channel_id)


def webhook_receive(
    *, channel_type: str, channel_id: int, headers: Mapping[str, str], body: bytes
) -> IntakeResult:
    """Verify, store once and queue the processing of one inbound webhook.

    Raises `NotFoundError` (`channel_not_found`) for an unknown channel or one of another
    type, and `DomainError` (`invalid_signature`, 401) for a bad or missing signature:
    nothing is stored then, and the failure is counted on the channel and in `/metrics`.
    An inactive channel's webhooks are still stored and processed: the sales happened.

    Idempotent: the event key is unique per channel and the row is written with INSERT ...
    ON CONFLICT DO NOTHING, so a duplicate (even a concurrent one) stores and queues
    nothing and gets the same answer. The event is committed before this returns; its
    processing (`webhooks.process_event`) is queued after the commit, and when the queue
    is down the event stays `received` for the minute sweep. No marketplace is called.
    The same signed request received again (types with a nonce) is answered from the
    event store, never refused: the duplicate answer when its event is stored, else it is
    taken as a first delivery (`webhooks.services.replays`).
    """
    channel = _channel_get(channel_id)
    if channel is None or channel.type != channel_type:
        raise NotFoundError("No such channel.", code="channel_not_found")
    if not _verified(channel, headers, body):
        # The kept copy may hold a secret changed since: check once more against the row,
        # but read it at most once every few seconds per channel (a flood of bad signatures
        # must not become a read per request).
        if _reread_due(channel_id):
            channel = _channel_load(channel_id)
            if channel is None or channel.type != channel_type:
                raise NotFoundError("No such channel.", code="channel_not_found")
            verified = _verified(channel, headers, body)
        else:
            verified = False
        if not verified:
            _signature_failed(channel)
            raise DomainError(
                "The webhook signature is missing or does not match.",
                code="invalid_signature",
                status_code=401,
            )
    nonce_key, replayed = nonce_claim(
        channel_id=channel.id, adapter=channel.adapter, headers=headers, body=body
    )
    event = _parse(channel.adapter, body, _kept_headers(headers, channel.adapter)[0])
    event = _storable(channel, event, headers) or _digest_event(body)
    if replayed:
        # Answered from the event store, never refused (see `replays`).
        WEBHOOKS.labels(channel.type, "replayed").inc()
        stored = replay_stored(channel_id=channel.id, event_key=event.event_key)
        logger.warning(
            "webhook.replayed", channel_id=channel.id, channel_type=channel.type, stored=stored
        )
        if stored:
            return IntakeResult(
                event_id=None, duplicate=True, topic=event.topic, ack=channel.adapter.webhook_ack
            )
    try:
        event_id = _store(channel, event, headers, body)
    except Exception:
        # Not stored: the same signed request sent again must be taken as a first delivery.
        nonce_release(nonce_key)
        raise
    _last_received_touch(channel.id)
    duplicate = event_id is None
    WEBHOOKS.labels(channel.type, "duplicate" if duplicate else "received").inc()
    logger.info(
        "webhook.received",
        channel_id=channel.id,
        topic=event.topic,
        event_id=event_id,
        duplicate=duplicate,
    )
    return IntakeResult(
        event_id=event_id, duplicate=duplicate, topic=event.topic, ack=channel.adapter.webhook_ack
    )


def _verified(channel: IntakeChannel, headers: Mapping[str, str], body: bytes) -> bool:
    try:
        return channel.adapter.webhook_verify(
            headers=dict(headers), body=body, url=channel.webhook_url
        )
    except (ValueError, KeyError, TypeError):
        # Credentials without the signing secret can verify nothing.
        logger.warning("webhook.verify_unavailable", channel_id=channel.id)
        return False
    except Exception as exc:
        # A check that breaks verifies nothing: 401 (the sender retries), never a 500.
        logger.warning(
            "webhook.verify_failed",
            channel_id=channel.id,
            channel_type=channel.type,
            error=type(exc).__name__,
            exc_info=True,
        )
        return False


def _reread_due(channel_id: int) -> bool:
    """Whether a failed signature may read the channel again now (and note that it did)."""
    moment = time.monotonic()
    every = settings.WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS
    last = _reread_at.get(channel_id)
    if last is not None and moment - last < every:
        return False
    _reread_at[channel_id] = moment
    return True


def _signature_failed(channel: IntakeChannel) -> None:
    # Counted in the shared cache; the row is written at most every few seconds.
    channel_signature_failure_record(channel_id=channel.id)
    SIGNATURE_FAILURES.labels(channel.type).inc()
    logger.warning("webhook.signature_failed", channel_id=channel.id, channel_type=channel.type)


def _digest_event(body: bytes) -> ChannelEvent:
    return ChannelEvent(
        topic=TOPIC_UNREADABLE, event_key="body:" + hashlib.sha256(body).hexdigest()
    )


def _parse(adapter: Adapter, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
    """The adapter's reading of the body (and of the headers kept with it), checked
    storable; a body it cannot read, or whose reading cannot be stored as it is, is still
    kept (unreadable, under its digest)."""
    try:
        event = adapter.webhook_parse(body=body, headers=headers or {})
        if len(event.event_key) > _FIELD_LIMITS["event_key"]:
            # Inside the try: a key that will not encode (a lone surrogate) is unreadable.
            digest = hashlib.sha256(event.event_key.encode()).hexdigest()
            event = ChannelEvent(
                topic=event.topic,
                event_key=f"sha256:{digest}",
                order_id=event.order_id,
                status=event.status,
                updated_at=event.updated_at,
            )
    except Exception:
        logger.exception("webhook.parse_failed")
        return _digest_event(body)
    fields = {
        "topic": event.topic,
        "event_key": event.event_key,
        "order_id": event.order_id or "",
        "notified_status": event.status or "",
    }
    bad = [name for name, value in fields.items() if not storable(value, _FIELD_LIMITS[name])]
    if bad:
        logger.warning("webhook.unstorable_fields", fields=bad)
        return _digest_event(body)
    return event


def storable(value: object, limit: int | None = None) -> bool:
    """Whether PostgreSQL can keep this text as it is (and it fits its column)."""
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        return False
    if "\x00" in value:  # text and jsonb refuse NUL
        return False
    try:
        value.encode("utf-8")  # a lone surrogate does not encode
    except UnicodeEncodeError:
        return False
    return True


def _kept_headers(
    headers: Mapping[str, str], adapter: Adapter | None = None
) -> tuple[dict[str, str], bool]:
    """The headers kept with an event (the common ones and those the channel's type reads),
    and whether every one of them could be stored."""
    names = KEPT_HEADERS + (adapter.webhook_kept_headers if adapter is not None else ())
    lowered = {str(key).lower(): value for key, value in headers.items()}
    kept = {name: lowered[name.lower()] for name in names if lowered.get(name.lower())}
    good = {name: value for name, value in kept.items() if storable(value, 1000)}
    return good, len(good) == len(kept)


def _storable(
    channel: IntakeChannel, event: ChannelEvent, headers: Mapping[str, str]
) -> ChannelEvent | None:
    """The event as it will be stored: None when a header kept with it cannot be stored
    (the event is then kept by its body, unreadable: `_digest_event`)."""
    if not _kept_headers(headers, channel.adapter)[1] and event.topic != TOPIC_UNREADABLE:
        logger.warning("webhook.unstorable_headers", channel_id=channel.id)
        return None
    return event


def _store(
    channel: IntakeChannel, event: ChannelEvent, headers: Mapping[str, str], body: bytes
) -> int | None:
    """INSERT the event (as `_storable` made it) unless the channel has its key; return the
    new id (None: a duplicate)."""
    now = timezone.now()
    kept = _kept_headers(headers, channel.adapter)[0]
    # Only order notifications and stock reports are acted on: the rest are kept, marked
    # ignored, never queued.
    status = (
        WebhookEvent.Status.RECEIVED
        if event.topic in PROCESSED_TOPICS
        else WebhookEvent.Status.IGNORED
    )
    values = {
        "created_at": now,
        "updated_at": now,
        "channel_id": channel.id,
        "source": WebhookEvent.Source.WEBHOOK,
        "topic": event.topic,
        "event_key": event.event_key,
        "order_id": event.order_id or "",
        "notified_status": event.status or "",
        "body": body,
        "headers": kept,
        "received_at": now,
        "status": status,
        "attempts": 0,
        "error": "",
        "processed_at": now if status == WebhookEvent.Status.IGNORED else None,
        # Queued right after the commit (below): the sweep leaves it to that task.
        "queued_at": now if status == WebhookEvent.Status.RECEIVED else None,
        "correlation_id": (get_correlation_id() or "")[:128],
    }
    event_id = webhook_event_insert(values)
    if event_id is not None and status == WebhookEvent.Status.RECEIVED:
        # A stock report often follows a sale whose own notification arrives alongside it:
        # its processing waits that long, so the sale is applied first (see
        # `channels_sync.services.reconcile`). The sweep's grace is longer than the wait.
        countdown = settings.CHANNEL_RECONCILE_SETTLE_SECONDS if event.topic == TOPIC_STOCK else 0
        transaction.on_commit(
            lambda: webhook_event_enqueue_or_defer(
                event_id, channel_type=channel.type, countdown=countdown
            ),
            robust=True,
        )
    return event_id


def webhook_event_insert(values: dict) -> int | None:
    """Store one event: INSERT ... ON CONFLICT (channel, event_key) DO NOTHING. Returns the
    new id (None: the channel has this key already). Queues nothing (the caller does)."""
    meta = WebhookEvent._meta
    columns, params = [], []
    for name, value in values.items():
        field = meta.get_field(name)
        columns.append(connection.ops.quote_name(field.column))
        params.append(field.get_db_prep_save(value, connection))
    channel_col = meta.get_field("channel").column
    sql = (
        f"INSERT INTO {meta.db_table} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({channel_col}, event_key) DO NOTHING RETURNING id"
    )
    # One statement: in autocommit it commits by itself (no BEGIN/COMMIT round trips), and
    # the on-commit enqueue then runs at once; inside a caller's transaction it waits for it.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def webhook_event_reparse(
    *, adapter: Adapter, body: bytes, headers: dict[str, str] | None = None
) -> ChannelEvent:
    """Read a stored body (with its kept headers) again with the adapter (as the intake
    would now): a parser fixed since makes events kept as unreadable or another topic
    processable."""
    return _parse(adapter, body, headers)


def webhook_challenge(
    *, channel_type: str, channel_id: int, query: Mapping[str, str]
) -> tuple[int, bytes, str]:
    """Answer a marketplace's `GET` check of a channel's webhook URL (eBay's endpoint
    validation). Raises `NotFoundError` (`channel_not_found`) for an unknown channel or one
    of another type, and `DomainError` 405 (`method_not_allowed`) when the type has no such
    check."""
    channel = _channel_get(channel_id)
    if channel is None or channel.type != channel_type:
        raise NotFoundError("No such channel.", code="channel_not_found")
    answer = channel.adapter.webhook_challenge(
        query={str(k): str(v) for k, v in query.items()}, url=channel.webhook_url
    )
    if answer is None:
        raise DomainError("Method GET not allowed.", code="method_not_allowed", status_code=405)
    return answer


def webhook_event_enqueue_or_defer(
    event_id: int, *, channel_type: str = "", countdown: float = 0
) -> bool:
    """Queue the processing of a stored event; when the queue is down, leave it to the sweep.

    The event is committed already, so a queue outage is no failure of the intake: the
    event stays `received` and `webhooks.sweep` queues it within a minute or two. Callers
    set the event's `queued_at` in the write that precedes this (the INSERT, the sweep's and
    the reprocess's UPDATE).
    """
    try:
        if countdown > 0:
            process_event.apply_async(kwargs={"event_id": event_id}, countdown=countdown)
        else:
            process_event.apply_async(kwargs={"event_id": event_id})
    except Exception:
        WEBHOOKS.labels(channel_type or "unknown", "deferred").inc()
        logger.warning("webhook.enqueue_deferred", event_id=event_id, exc_info=True)
        return False
    return True


def _last_received_touch(channel_id: int) -> None:
    """Write the channel's last-received time, at most once a minute (per process)."""
    moment = time.monotonic()
    every = LAST_RECEIVED_EVERY.total_seconds()
    if moment - _last_touched.get(channel_id, -every) < every:
        return
    _last_touched[channel_id] = moment
    now = timezone.now()
    # Conditional: of many processes, only the first in a minute writes the row.
    Channel.objects.filter(pk=channel_id).filter(
        Q(webhook_last_received_at__isnull=True)
        | Q(webhook_last_received_at__lt=now - LAST_RECEIVED_EVERY)
    ).update(webhook_last_received_at=now)
