from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="webhook sweep",
        task="webhooks.sweep",
        description="Every minute: process webhook events left unprocessed (a lost enqueue).",
        every_seconds=60,
    ),
    Schedule(
        name="webhook event purge",
        task="webhooks.purge_events",
        description="04:10 UTC: delete processed and ignored webhook events past retention.",
        crontab="10 4 * * *",
    ),
    Schedule(
        name="order poll",
        task="webhooks.poll_orders",
        description="Every ORDERS_POLL_INTERVAL_SECONDS: poll every active channel's orders.",
        every_setting="ORDERS_POLL_INTERVAL_SECONDS",
    ),
]
