"""ERP agent health task (thin shell over the service)."""

from celery import shared_task


# A fixed limit: a stuck database or alert call must not hold the worker past the next run.
@shared_task(name="erp_mapping.check_agents", soft_time_limit=120, time_limit=180)
def check_agents() -> dict[str, int]:
    """Mark silent agents degraded or offline, alerting for each one gone offline (beat:
    every 5 minutes). Safe to run twice: a second run finds nothing more to change."""
    from erp_mapping.services.agents import agents_check_health

    health = agents_check_health()
    return {"degraded": len(health.degraded), "offline": len(health.offline)}
