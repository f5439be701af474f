from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from channels_sync.hooks import listing_created_subscribe, order_facts_register
        from orders.listeners import parked_orders_reprocess_on_commit
        from orders.selectors import order_facts

        # New listings may match the lines of parked orders. They are reprocessed after the
        # listings' commit, in a task, one order per transaction: inside the listing batch
        # the batch would lock listings, then orders, while an order being applied locks its
        # order, then (marking listings dirty) the same listings; the two could deadlock.
        listing_created_subscribe(parked_orders_reprocess_on_commit)
        # The conflict console finds the conflicts naming an order through its facts.
        order_facts_register(order_facts)
