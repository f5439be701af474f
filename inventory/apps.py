from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Inventory"

    def ready(self) -> None:
        from core.metrics import register_state_gauge
        from inventory import selectors

        register_state_gauge(
            "syncstore_reservations_active",
            "Active stock reservations.",
            selectors.reservations_active_count,
        )
        register_state_gauge(
            "syncstore_stock_levels_below_min",
            "Stock levels whose available quantity is below their minimum.",
            selectors.stock_levels_below_min_count,
        )
