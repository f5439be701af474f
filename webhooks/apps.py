from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from channels_sync.hooks import orders_pending_register
        from webhooks.selectors import orders_pending

        # A stock conflict held back as a possible late sale waits for these to be applied.
        orders_pending_register(orders_pending)
