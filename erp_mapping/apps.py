from django.apps import AppConfig


class ErpMappingConfig(AppConfig):
    name = "erp_mapping"
    verbose_name = "ERP"

    def ready(self) -> None:
        from core.health import register_readiness_detail
        from core.metrics import register_state_family
        from erp_mapping import selectors
        from erp_mapping.services.erp_sync import (
            order_cancelled_listener,
            order_confirmed_listener,
        )
        from inventory.hooks import stock_source_register
        from orders.hooks import order_cancelled_subscribe, order_confirmed_subscribe

        # A vendor fed by an ERP has its physical stock corrected back to the ERP's figures:
        # the stock services' callers (the conflict console) refuse local corrections.
        stock_source_register(selectors.vendor_erp_stock_source)

        # Confirmed orders get their ERP create job, cancelled ones their cancel job (on the
        # commit of the change; the sweep creates what a failed listener missed).
        order_confirmed_subscribe(order_confirmed_listener)
        order_cancelled_subscribe(order_cancelled_listener)
        # An open circuit is a degraded feature (orders wait for the ERP), never an unready
        # process: it shows in the details, the status stays as the checks say.
        register_readiness_detail("erp_agent_breakers", selectors.breakers_readiness)
        register_readiness_detail("erp_agents_unsigned", selectors.agents_unsigned_readiness)
        register_state_family(
            "syncstore_erp_agent_breaker_state",
            "Circuit of each vendor's ERP agent: 0 closed, 1 half-open, 2 open.",
            ["vendor"],
            selectors.breakers_metric,
        )
        register_state_family(
            "syncstore_erp_sync_jobs",
            "ERP sync jobs by status.",
            ["status"],
            selectors.sync_jobs_by_status,
        )
