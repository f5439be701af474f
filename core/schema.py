"""OpenAPI helpers: the API-key security scheme, the error shape, documented error codes."""

from drf_spectacular import openapi
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import pagination, serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "An API key (`ssk_...`); `Authorization: Api-Key <key>` also works.",
        }


class HttpUrlFieldExtension(OpenApiSerializerFieldExtension):
    """An http(s) URL is a `format: uri` string; a field that may be blank says so too."""

    target_class = "core.serializers.HttpUrlField"

    def map_serializer_field(self, auto_schema, direction):
        schema = {"type": "string", "format": "uri", "maxLength": self.target.max_length}
        if self.target.allow_blank:
            return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
        return schema


ErrorSerializer = inline_serializer(
    name="Error",
    fields={
        "code": serializers.CharField(help_text="Stable machine-readable error code."),
        "message": serializers.CharField(help_text="What went wrong, for people."),
        "details": serializers.DictField(
            help_text="Structured details; field errors are listed here by field name."
        ),
        "correlation_id": serializers.CharField(help_text="Quote it when asking for help."),
    },
)

_COMMON = {
    # The request's own limits, checked before any view (core.errors, core.parsers,
    # core.request_input).
    400: ["too_many_fields", "invalid_json", "validation_error (a NUL character)"],
    401: ["not_authenticated", "invalid_api_key", "api_key_revoked"],
    403: ["insufficient_scope"],
    413: ["payload_too_large"],
    429: ["throttled (with a Retry-After header)"],
}


def error_responses_only(codes: dict[int, list[str]]) -> dict[int, OpenApiResponse]:
    """Document the given error statuses and codes (in the one error shape)."""
    return {
        status: OpenApiResponse(
            response=ErrorSerializer,
            description="Error codes: " + ", ".join(f"`{name}`" for name in names),
        )
        for status, names in sorted(codes.items())
    }


def error_responses(codes: dict[int, list[str]] | None = None) -> dict[int, OpenApiResponse]:
    """Document an endpoint's error statuses and codes, plus the ones every endpoint has."""
    merged: dict[int, list[str]] = {status: list(names) for status, names in _COMMON.items()}
    for status, names in (codes or {}).items():
        merged.setdefault(status, []).extend(names)
    return error_responses_only(merged)


def idempotency_header(*, required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        name="Idempotency-Key",
        type=OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        required=required,
        description=(
            "A unique key per operation (e.g. a UUID), kept 24 hours. The same key and body "
            "replays the stored response with `Idempotent-Replayed: true`; the same key with "
            "another body answers 422 `idempotency_key_reused`; while the first request runs, "
            "409 `idempotency_key_in_progress`."
        ),
    )


# Answers the request's form can earn on any list: a filter or paging value it cannot use.
_LIST_ERRORS = {400: ["invalid_filter"]}
_PAGE_ERRORS = {404: ["page_not_found"]}
# Answers any request body can earn before the view reads it.
_BODY_ERRORS = {
    400: ["parse_error", "invalid_json"],
    413: ["payload_too_large"],
    415: ["unsupported_media_type"],
}


class AutoSchema(openapi.AutoSchema):
    """Document the errors an operation can answer whatever its view declares.

    Every authenticated operation can answer 401, 403 and 429; every paginated list 400
    `invalid_filter` (and a page-number list 404 `page_not_found`); every operation with a
    body 400 for a body that is not JSON, 413 for one too large and 415 for another media type.
    Codes are added to a status the view already documents.
    """

    def _extra_errors(self) -> dict[int, list[str]]:
        groups = []
        if self.get_auth():
            groups.append(_COMMON)
        if self.method == "GET" and self._is_list_view():
            paginator = self._get_paginator()
            if paginator is not None:
                groups.append(_LIST_ERRORS)
                if isinstance(paginator, pagination.PageNumberPagination):
                    groups.append(_PAGE_ERRORS)
        if self.method in {"POST", "PUT", "PATCH"}:
            groups.append(_BODY_ERRORS)
        merged: dict[int, list[str]] = {}
        for group in groups:
            for status, names in group.items():
                merged.setdefault(status, []).extend(names)
        return merged

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction=direction)
        for status, names in sorted(self._extra_errors().items()):
            existing = responses.get(str(status))
            if existing is None:
                response = error_responses_only({status: names})[status]
                responses[str(status)] = self._get_response_for_code(
                    response, str(status), direction=direction
                )
                continue
            missing = [name for name in names if f"`{name}`" not in existing["description"]]
            if missing:
                existing["description"] += ", " + ", ".join(f"`{name}`" for name in missing)
        return dict(sorted(responses.items()))
