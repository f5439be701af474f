from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="reprocess parked orders",
        task="orders.reprocess_parked_all",
        description=(
            "Every 5 minutes: reprocess parked orders (oldest first, a bounded batch) that "
            "the listing hook missed."
        ),
        every_seconds=300,
    ),
]
