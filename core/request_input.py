"""Refuse request input that no view can store: NUL characters in the URL.

PostgreSQL text columns cannot hold NUL (`\\x00`), so a path parameter or query parameter
holding one (`/api/v1/products/A%00B/`) would reach the database and fail there. One hook
for every view refuses it first: 400 `validation_error` naming the parameter. (JSON bodies
are checked by `core.parsers.JSONParser`.)
"""

from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse

from core.errors import json_error
from core.parsers import NUL, NUL_MESSAGE


def _nul_parameter(request: HttpRequest, view_args: tuple, view_kwargs: dict) -> str | None:
    for name, value in view_kwargs.items():
        if isinstance(value, str) and NUL in value:
            return name
    for index, value in enumerate(view_args):
        if isinstance(value, str) and NUL in value:
            return f"path[{index}]"
    # Reading GET here may raise TooManyFieldsSent, which handler400 answers in the shape.
    for name, values in request.GET.lists():
        if NUL in name or any(NUL in value for value in values):
            return name.replace(NUL, "\\u0000")
    return None


class RequestInputMiddleware:
    """Refuse NUL characters in path and query parameters, before any view runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable,
        view_args: tuple,
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        name = _nul_parameter(request, view_args, view_kwargs)
        if name is None:
            return None
        # The API and the webhook endpoint answer in the one error shape; other pages (the
        # admin) get Django's 400.
        if not request.path.startswith(("/api/", "/webhooks/")):
            raise BadRequest(f"{name}: {NUL_MESSAGE}")
        return json_error(
            400, "validation_error", f"Invalid input: {name}: {NUL_MESSAGE}", {name: [NUL_MESSAGE]}
        )
