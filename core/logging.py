"""JSON logging with structlog: shared processors, secret redaction, the LOGGING dict.

Imported by the settings module, so it must not import Django models or read settings.
"""

import logging
import re
from typing import Any

import structlog

from core.secrets import Secret

REDACTED = "[REDACTED]"

# Keys whose values are secret wherever they appear in an event (case-insensitive).
_SECRET_KEY = re.compile(
    r"(authorization|token|secret|passw|signature|^sign$|^sig$|api[-_]?key|cookie|"
    r"credential|private[-_]?key|client[-_]?secret)",
    re.IGNORECASE,
)
# Credentials that travel inside strings: auth header values and query parameters.
_SECRET_IN_TEXT = re.compile(r"\b(Bearer|Api-Key|Basic|Token)\s+[^\s,;\"']+", re.IGNORECASE)
_SECRET_QUERY_PARAM = re.compile(
    r"([?&](?:access_token|refresh_token|token|sign|signature|api_key|apikey|secret|"
    r"password|app_secret|client_secret)=)[^&\s\"']+",
    re.IGNORECASE,
)


def redact_value(value: Any, depth: int = 0) -> Any:
    """Return `value` with secrets masked: marked secrets, secret keys, tokens in text."""
    if isinstance(value, Secret):
        return REDACTED
    if depth > 8:
        return value
    if isinstance(value, str):
        if "=" in value or " " in value:
            value = _SECRET_QUERY_PARAM.sub(r"\1" + REDACTED, value)
            value = _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
        return value
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, "")
                else redact_value(item, depth + 1)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item, depth + 1) for item in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: dict) -> dict:
    """structlog processor: mask secrets anywhere in the event before it is rendered."""
    return redact_value(event_dict)


# Servers (gunicorn, Celery) log to standard output; `manage.py` sends the JSON lines to
# standard error instead, so that a command's human output (a key, a report) stays clean
# on standard output and can be piped.
_log_stream = "ext://sys.stdout"


def logs_to_stderr() -> None:
    """Send the JSON log lines to standard error (call before the settings are loaded)."""
    global _log_stream
    _log_stream = "ext://sys.stderr"


SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_structlog() -> None:
    """Configure structlog to hand its events to the stdlib handlers (JSON formatter)."""
    structlog.configure(
        processors=[
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def build_logging_config(level: str) -> dict:
    """Return the LOGGING dict: every record, ours or a library's, as one JSON line."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    redact_secrets,
                    structlog.processors.JSONRenderer(sort_keys=False),
                ],
                "foreign_pre_chain": [*SHARED_PROCESSORS, structlog.stdlib.ExtraAdder()],
            },
        },
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": _log_stream,
            },
        },
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            "django.server": {"level": "WARNING"},
            # django-structlog logs each request; Django's own 4xx warnings would repeat it.
            "django.request": {"level": "ERROR"},
            "urllib3": {"level": "WARNING"},
            "celery": {"level": level},
        },
    }


def json_handler() -> logging.Handler | None:
    """Return the JSON handler on the root logger (tests point it at a buffer)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            return handler
    return None
