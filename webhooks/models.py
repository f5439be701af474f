"""Inbound marketplace webhooks, stored before anything acts on them.

A verified notification becomes one `WebhookEvent` (unique per channel and event key, so
a marketplace's retries and duplicates are stored once), committed before the answer; a
task on the `webhooks` queue processes it afterwards.
"""

from django.db import models
from django.utils import timezone

from channels_sync.models import Channel
from core.models import BaseModel


class WebhookEvent(BaseModel):
    """One verified notification from a marketplace, as received (raw bytes kept)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "received"  # stored, not processed yet (or being processed)
        PROCESSED = "processed", "processed"
        IGNORED = "ignored", "ignored"  # a topic the product does not act on
        FAILED = "failed", "failed"  # out of retries (a dead letter holds the task)

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "webhook"  # a notification the marketplace sent (body as sent)
        # An order a poll listed but could not apply (or the detail call left out): kept
        # here so it retries, backs off and dead-letters like a notification.
        POLL = "poll", "poll"

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="webhook_events")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.WEBHOOK)
    topic = models.CharField(max_length=50)
    event_key = models.CharField(max_length=200)
    order_id = models.CharField(max_length=100, blank=True)
    notified_status = models.CharField(
        max_length=100, blank=True, help_text="The marketplace's status, as notified."
    )
    # Bytes, not text: the signature covers the exact bytes, and a body need not be UTF-8.
    body = models.BinaryField()
    headers = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # A worker processing the event holds it until then (a crashed worker's claim lapses).
    locked_until = models.DateTimeField(null=True, blank=True)
    # A failed attempt's retry is due then; the sweep leaves the event to that retry.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Its processing was last queued then (every enqueue sets it): the sweep leaves an event
    # queued within the grace to that task, however long the queue's backlog.
    queued_at = models.DateTimeField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "event_key"], name="uniq_webhook_event_channel_key"
            ),
        ]
        indexes = [
            # The sweep (received, older than the grace) and the purge (done, older than the
            # retention) read by status and time.
            models.Index(fields=["status", "received_at"], name="webhook_event_status_time"),
            # "Last webhook received" per channel, read from here instead of a hot row.
            models.Index(fields=["channel", "received_at"], name="webhook_event_channel_time"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id}:{self.topic}:{self.event_key}"
