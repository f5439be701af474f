"""Deployment checks (`manage.py check --deploy`): no embedded secret or public /metrics."""

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def embedded_secrets_check(app_configs, **kwargs):
    problems = []
    if settings.SECRET_KEY == settings.EMBEDDED_SECRET_KEY:
        problems.append(
            Warning(
                "DJANGO_SECRET_KEY is the embedded development key.",
                hint="Set DJANGO_SECRET_KEY to a long random value.",
                id="core.W001",
            )
        )
    if settings.EMBEDDED_FIELD_ENCRYPTION_KEY in settings.FIELD_ENCRYPTION_KEYS:
        problems.append(
            Warning(
                "FIELD_ENCRYPTION_KEYS contains the embedded development key.",
                hint="Generate keys with `manage.py rotate_encryption_keys --generate-key`.",
                id="core.W002",
            )
        )
    return problems


@register(deploy=True)
def metrics_protected_check(app_configs, **kwargs):
    """Warn when /metrics answers anyone in production (it names routes, volumes, errors)."""
    if settings.DEBUG or settings.METRICS_BEARER_TOKEN:
        return []
    return [
        Warning(
            "/metrics is public: METRICS_BEARER_TOKEN is empty.",
            hint=(
                "Set METRICS_BEARER_TOKEN to a long random value and give Prometheus "
                "`authorization: {credentials: <token>}`."
            ),
            id="core.W010",
        )
    ]
