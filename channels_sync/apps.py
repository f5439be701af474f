from django.apps import AppConfig


class ChannelsSyncConfig(AppConfig):
    name = "channels_sync"
    verbose_name = "Channels"

    def ready(self) -> None:
        from channels_sync import checks  # noqa: F401 - registers the system checks
        from channels_sync.services.dirty import listings_mark_dirty_for_stock
        from inventory.hooks import stock_change_subscribe

        # Stock movements mark the affected listings dirty in their own transaction.
        stock_change_subscribe(listings_mark_dirty_for_stock)
