"""Webhook counters for `/metrics` (see `core.metrics`): every label is bounded (the channel
types, a fixed set of outcomes)."""

from prometheus_client import Counter

WEBHOOKS = Counter(
    "syncstore_webhooks_total",
    "Inbound webhooks by channel type and outcome (received, duplicate, processed, ignored, "
    "failed, deferred: stored but not queued, replayed: a signed request seen before, refused).",
    ["channel_type", "outcome"],
)
SIGNATURE_FAILURES = Counter(
    "syncstore_webhook_signature_failures_total",
    "Inbound webhooks refused for a bad or missing signature, by channel type.",
    ["channel_type"],
)
ORDER_POLLS = Counter(
    "syncstore_order_polls_total",
    "Order polls of a channel by outcome (ok; deferred: some orders kept to retry; stopped: "
    "out of time; failed: the listing failed; busy).",
    ["channel_type", "outcome"],
)
