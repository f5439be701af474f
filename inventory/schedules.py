from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="expire reservations",
        task="inventory.expire_reservations",
        description="Every minute: give back stock held by reservations past their time.",
        every_seconds=60,
    ),
]
