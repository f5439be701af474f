from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="channel push sweep",
        task="channels_sync.sweep",
        description="Every minute: push listings left dirty (lost enqueue, backoff ended).",
        every_seconds=60,
    ),
]
