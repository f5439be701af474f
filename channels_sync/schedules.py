from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="channel push sweep",
        task="channels_sync.sweep",
        description="Every minute: push listings left dirty (lost enqueue, backoff ended).",
        every_seconds=60,
    ),
    Schedule(
        name="channel reconciliation",
        task="channels_sync.reconcile_channels",
        description=(
            "Every CHANNEL_RECONCILE_INTERVAL_SECONDS (4 hours by default): read every active "
            "channel's stock back and open a conflict where it differs from what was pushed."
        ),
        every_setting="CHANNEL_RECONCILE_INTERVAL_SECONDS",
    ),
]
