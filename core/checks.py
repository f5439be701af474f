"""Deployment checks (`manage.py check --deploy`): embedded secrets must not reach production."""

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
