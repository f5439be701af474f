"""OpenAPI helpers: the API-key security scheme, the error shape, documented error codes."""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers


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


def error_responses(codes: dict[int, list[str]] | None = None) -> dict[int, OpenApiResponse]:
    """Document an endpoint's error statuses and codes, plus the ones every endpoint has."""
    merged: dict[int, list[str]] = {status: list(names) for status, names in _COMMON.items()}
    for status, names in (codes or {}).items():
        merged.setdefault(status, []).extend(names)
    return {
        status: OpenApiResponse(
            response=ErrorSerializer,
            description="Error codes: " + ", ".join(f"`{name}`" for name in names),
        )
        for status, names in sorted(merged.items())
    }


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


class AutoSchema(openapi.AutoSchema):
    """Add the errors every authenticated endpoint can answer (401, 403, 429) to each one."""

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction=direction)
        if self.get_auth():
            for status, response in error_responses().items():
                if str(status) not in responses:
                    responses[str(status)] = self._get_response_for_code(
                        response, str(status), direction=direction
                    )
        return responses
