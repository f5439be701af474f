"""Order -> ERP tasks (queue `orders`): send one sync job, and the sweep (thin shells)."""

from celery import shared_task


# A send is one agent call (ERP_AGENT_HTTP_TIMEOUT_SECONDS): the limits only stop a stuck
# worker; the job's lease runs out and the sweep queues it again.
@shared_task(name="erp_mapping.erp_sync_send", soft_time_limit=120, time_limit=180)
def erp_sync_send(job_id: int, revive: bool = False) -> str | None:
    """Send one ERP sync job to its vendor's agent, if it is due (safe to run twice).

    `revive` (a dead letter retried from the console) first gives a dead job a fresh set
    of attempts. Failures are the job's to record and retry (the sweep), never this task's.
    """
    from erp_mapping.services.erp_sync import erp_sync_revive_and_send
    from erp_mapping.services.erp_sync import erp_sync_send as send

    if revive:
        result = erp_sync_revive_and_send(job_id=job_id)
        return None if result is None else result.outcome
    return send(job_id=job_id).outcome


@shared_task(name="erp_mapping.erp_sync_sweep", soft_time_limit=240, time_limit=300)
def erp_sync_sweep() -> dict[str, int]:
    """Queue due ERP sync jobs, resend overdue callbacks, requeue stuck jobs (beat)."""
    from erp_mapping.services.erp_sync import erp_sync_sweep as sweep

    return sweep().as_dict()
