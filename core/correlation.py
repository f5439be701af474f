"""Correlation ids: one id per request or task, on every log line and every outbound call.

The id lives in structlog's context variables, so it is bound to every log line of the
request or task that owns it. It enters with `X-Correlation-ID` (or `X-Request-ID`) or is
made here; it leaves on the response, in the headers of every Celery task published while
it is bound, and in the `X-Correlation-ID` header of every outbound HTTP call
(`core.http`).
"""

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.http import HttpRequest, HttpResponse

HEADER = "X-Correlation-ID"
INBOUND_HEADERS = ("X-Correlation-ID", "X-Request-ID")
# The Celery message header carrying the id ("correlation_id" is Celery's own property).
TASK_HEADER = "syncstore_correlation_id"
# Accept callers' ids that are safe to log and echo; anything else is replaced.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

logger = structlog.get_logger(__name__)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def get_correlation_id() -> str | None:
    """Return the correlation id bound to the current request or task, if any."""
    return structlog.contextvars.get_contextvars().get("correlation_id")


def clean_correlation_id(value: str | None) -> str | None:
    if value and _VALID_ID.match(value):
        return value
    return None


@contextmanager
def correlation_scope(correlation_id: str | None = None, **extra: object) -> Iterator[str]:
    """Bind a correlation id (given or new) for the duration of a block; restore after."""
    cid = clean_correlation_id(correlation_id) or new_correlation_id()
    tokens = structlog.contextvars.bind_contextvars(correlation_id=cid, **extra)
    try:
        yield cid
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


class CorrelationIdMiddleware:
    """Take or make the request's correlation id, bind it for logging, echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        cid = None
        for header in INBOUND_HEADERS:
            cid = clean_correlation_id(request.headers.get(header))
            if cid:
                break
        cid = cid or new_correlation_id()
        # A worker thread serves many requests: start each one from a clean context.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(correlation_id=cid)
        request.correlation_id = cid
        try:
            response = self.get_response(request)
        finally:
            structlog.contextvars.clear_contextvars()
        response[HEADER] = cid
        return response


# --- Celery -------------------------------------------------------------------------------


@before_task_publish.connect(dispatch_uid="core.correlation.inject")
def _inject_correlation_id(headers: dict | None = None, **_kwargs: object) -> None:
    cid = get_correlation_id()
    if cid and headers is not None:
        headers.setdefault(TASK_HEADER, cid)


@task_prerun.connect(dispatch_uid="core.correlation.bind")
def _bind_task_context(task_id: str = "", task: object = None, **_kwargs: object) -> None:
    request = getattr(task, "request", None)
    if request is None or request.is_eager:
        # Eager tasks run inside the caller, whose context already holds the id.
        return
    cid = clean_correlation_id(request.get(TASK_HEADER)) or new_correlation_id()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        correlation_id=cid, task_id=task_id, task_name=getattr(task, "name", "")
    )
    logger.info("task.started", retries=request.retries)


@task_postrun.connect(dispatch_uid="core.correlation.unbind")
def _unbind_task_context(task: object = None, state: str | None = None, **_kw: object) -> None:
    request = getattr(task, "request", None)
    if request is None or request.is_eager:
        return
    logger.info("task.finished", state=state)
    structlog.contextvars.clear_contextvars()
