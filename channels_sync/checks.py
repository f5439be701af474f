"""System checks: the push task's time limits must agree with its run lock and the broker;
the default Shopify API version must take the stock calls the adapter makes."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def push_time_limits_check(app_configs, **kwargs):
    problems = []
    soft = settings.CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS
    hard = settings.CHANNEL_PUSH_TIME_LIMIT_SECONDS
    if soft >= hard:
        problems.append(
            Warning(
                "CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS is not below "
                "CHANNEL_PUSH_TIME_LIMIT_SECONDS.",
                hint="A push run past its time would be killed without giving its lock back "
                "or queueing the rest: keep the soft limit some seconds below the hard one.",
                id="channels_sync.W001",
            )
        )
    visibility = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("visibility_timeout")
    if visibility is not None and hard >= visibility:
        problems.append(
            Warning(
                "CHANNEL_PUSH_TIME_LIMIT_SECONDS is not below the broker's visibility timeout.",
                hint="The broker would hand a push still running to a second worker.",
                id="channels_sync.W002",
            )
        )
    return problems


@register()
def shopify_api_version_check(app_configs, **kwargs):
    from channels_sync.adapters.shopify import api_version_problem

    problem = api_version_problem(str(settings.SHOPIFY_API_VERSION))
    if not problem:
        return []
    return [
        Error(
            f"SHOPIFY_API_VERSION: {problem}.",
            hint="Every Shopify channel without an api_version of its own calls this version.",
            id="channels_sync.E001",
        )
    ]
