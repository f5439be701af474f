from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks, schema  # noqa: F401 - registers checks and extensions
        from core.metrics import register_state_gauge
        from core.selectors import dead_letters_open_count

        register_state_gauge(
            "syncstore_dead_letters_open",
            "Dead letters waiting for staff.",
            dead_letters_open_count,
        )
