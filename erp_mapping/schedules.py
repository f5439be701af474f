from core.schedules import Schedule

SCHEDULES = [
    Schedule(
        name="nightly ERP pull",
        task="erp_mapping.pull_all",
        description="02:00 UTC: pull stock counts from every vendor's ERP.",
        crontab="0 2 * * *",
    ),
    Schedule(
        name="ERP agent health",
        task="erp_mapping.check_agents",
        description="Every 5 minutes: mark silent agents degraded (2 min) or offline (10 min).",
        every_seconds=300,
    ),
    Schedule(
        name="ERP archive clean-up",
        task="erp_mapping.purge_archives",
        description="03:30 UTC: delete raw pull payloads older than the retention period.",
        crontab="30 3 * * *",
    ),
    Schedule(
        name="ERP reconciliation",
        task="erp_mapping.reconcile_all",
        description="Every ERP_RECONCILE_INTERVAL_SECONDS (hourly): compare each vendor with "
        "an online agent with its ERP by range checksums, and correct the drift.",
        every_setting="ERP_RECONCILE_INTERVAL_SECONDS",
    ),
    Schedule(
        name="ERP order sync sweep",
        task="erp_mapping.erp_sync_sweep",
        description=(
            "Every ERP_SYNC_SWEEP_INTERVAL_SECONDS (60 s): send due order jobs to the ERP "
            "agents, resend overdue callbacks, requeue jobs stuck processing."
        ),
        every_setting="ERP_SYNC_SWEEP_INTERVAL_SECONDS",
    ),
]
