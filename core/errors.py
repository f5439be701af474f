"""One error shape for the whole API.

Every 4xx and 5xx answer of the API is
`{"code": "...", "message": "...", "details": {...}, "correlation_id": "..."}`.
Domain errors are `DomainError` (or a subclass) with a stable code; DRF's own exceptions,
Django's 404 and unexpected exceptions are translated into the same shape here.
"""

from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.cache import QUEUE_ERRORS
from core.correlation import get_correlation_id
from core.metrics import API_ERRORS

logger = structlog.get_logger(__name__)


class DomainError(Exception):
    """A business rule refused the operation; `code` is stable and documented."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"
    message = "The request cannot be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status_code = status_code or self.status_code
        self.details = details or {}
        super().__init__(self.message)


class NotFoundError(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "Not found."


class ConflictError(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    message = "The request conflicts with the current state."


class ServiceUnavailable(DomainError):
    """A service this request truly needs (Redis: the queue, a lock) is down; retry later.

    Answered as 503 with `Retry-After`. Raised directly, or translated by the exception
    handler from a cache or queue error that reached it.
    """

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    message = "A service this request needs is unavailable; retry shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 30, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.details = {"retry_after": retry_after, **self.details}


def error_body(code: str, message: str, details: dict | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "details": details or {},
        "correlation_id": get_correlation_id(),
    }


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    return {"non_field_errors": detail if isinstance(detail, list) else [detail]}


_DRF_CODES = {
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def _drf_code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str) and codes not in {"error", "invalid"}:
        return codes
    for cls, code in _DRF_CODES.items():
        if isinstance(exc, cls):
            return code
    return exc.default_code


def request_limit_error(exc: Exception) -> DomainError | None:
    """The answer to a request over the configured size limits, or None for other errors.

    Django raises these lazily, wherever the body or the query string is first read (a
    parser, `request.data`, `request.GET`), so both the API's handler and `handler400` (for
    reads outside a view) translate them here.
    """
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return DomainError(
            f"The request body is larger than {limit} bytes.",
            code="payload_too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            details={"max_bytes": limit},
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return DomainError(
            f"The request has more than {limit} fields or query parameters.",
            code="too_many_fields",
            details={"max_fields": limit},
        )
    return None


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """Render any exception raised in an API view in the one error shape."""
    exc = request_limit_error(exc) or exc
    headers: dict[str, str] = {}
    if isinstance(exc, QUEUE_ERRORS):
        # Redis (the cache or the broker) is down and this request cannot do without it.
        logger.warning("api.service_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        exc = ServiceUnavailable()
    if isinstance(exc, ServiceUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, DomainError):
        status_code, code, message, details = exc.status_code, exc.code, exc.message, exc.details
    elif isinstance(exc, Http404):
        status_code, code, message, details = 404, "not_found", "Not found.", {}
    elif isinstance(exc, DjangoPermissionDenied):
        status_code, code, message, details = 403, "permission_denied", str(exc) or "Forbidden.", {}
    elif isinstance(exc, exceptions.ValidationError):
        status_code, code = exc.status_code, "validation_error"
        message = f"Invalid input: {_first_message(exc.detail)}"
        details = _validation_details(exc.detail)
    elif isinstance(exc, exceptions.APIException):
        status_code, code = exc.status_code, _drf_code(exc)
        message, details = _first_message(exc.detail), {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            retry_after = max(1, int(exc.wait + 0.999))
            headers["Retry-After"] = str(retry_after)
            details = {"retry_after": retry_after}
            message = f"Rate limit exceeded; retry in {retry_after} s."
    else:
        logger.exception("api.unhandled_error", error_class=type(exc).__name__)
        status_code, code = 500, "internal_error"
        message, details = "An unexpected error occurred; it has been logged.", {}
    set_rollback()
    API_ERRORS.labels(code).inc()
    return Response(error_body(code, message, details), status=status_code, headers=headers)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_error(
    status_code: int, code: str, message: str, details: dict | None = None
) -> JsonResponse:
    API_ERRORS.labels(code).inc()
    return JsonResponse(error_body(code, message, details), status=status_code)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return json_error(404, "not_found", f"No endpoint at {request.path}.")
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return json_error(500, "internal_error", "An unexpected error occurred.")
    return defaults.server_error(request)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    limit_error = request_limit_error(exception)
    if _is_api(request):
        if limit_error is not None:
            return json_error(
                limit_error.status_code, limit_error.code, limit_error.message, limit_error.details
            )
        return json_error(400, "bad_request", "The request is malformed.")
    if limit_error is not None and limit_error.status_code == 413:
        return HttpResponse(limit_error.message, status=413, content_type="text/plain")
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return json_error(403, "permission_denied", "Forbidden.")
    return defaults.permission_denied(request, exception)
