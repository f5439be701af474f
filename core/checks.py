"""System checks: placeholder secrets refuse to start; `--deploy` warns about embedded
secrets and a public /metrics.

The errors run with every management command (and `check --deploy`); `secrets_refuse_unsafe`
runs them where Django's checks do not, when gunicorn loads the app and when a Celery worker or
beat starts, so a placeholder key stops the process before the first encrypted write.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from core.crypto import KeyRing

# The placeholders `.env.example` ships with: a copied `.env` must not run with them.
PLACEHOLDER_SECRET_KEYS = frozenset({"change-me-to-a-long-random-string"})
PLACEHOLDER_ENCRYPTION_KEYS = frozenset({"generate-one-and-put-it-here"})
GENERATE_KEY_HINT = (
    "Generate a key with `python manage.py rotate_encryption_keys --generate-key` and put it "
    "in FIELD_ENCRYPTION_KEYS (or leave FIELD_ENCRYPTION_KEYS unset for the demo's embedded key)."
)


@register(Tags.security)
def placeholder_secrets_check(app_configs, **kwargs) -> list[Error]:
    """Refuse the `.env.example` placeholders and unusable encryption keys."""
    problems = []
    if settings.SECRET_KEY in PLACEHOLDER_SECRET_KEYS:
        problems.append(
            Error(
                "DJANGO_SECRET_KEY is still the placeholder from .env.example.",
                hint=(
                    "Set DJANGO_SECRET_KEY to a long random value, e.g. the output of "
                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`."
                ),
                id="core.E001",
            )
        )
    keys = list(settings.FIELD_ENCRYPTION_KEYS)
    if any(key.strip() in PLACEHOLDER_ENCRYPTION_KEYS for key in keys):
        problems.append(
            Error(
                "FIELD_ENCRYPTION_KEYS is still the placeholder from .env.example.",
                hint=GENERATE_KEY_HINT,
                id="core.E002",
            )
        )
    else:
        try:
            KeyRing(keys)
        except ImproperlyConfigured as exc:
            problems.append(
                Error(
                    f"FIELD_ENCRYPTION_KEYS cannot be used: {exc}.",
                    hint=GENERATE_KEY_HINT,
                    id="core.E002",
                )
            )
    return problems


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


def secrets_refuse_unsafe() -> None:
    """Raise `ImproperlyConfigured` naming each `core.E00x` problem (processes without checks)."""
    problems = placeholder_secrets_check(None)
    if problems:
        raise ImproperlyConfigured(
            " ".join(f"{problem.msg} ({problem.id}) {problem.hint}" for problem in problems)
        )


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
