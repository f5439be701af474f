"""Pagination for list endpoints.

A `page_size` that is not an integer from 1 to the maximum, a `page` that is not an integer
and a cursor that cannot be read answer 400 `invalid_filter` (DRF would silently use the
default size, or answer 404). A well-formed page number with no page (0, negative, past the
end) answers 404 `page_not_found`.
"""

import re

from django.core.paginator import InvalidPage
from rest_framework import pagination

from core.errors import NotFoundError
from core.filters import invalid_filter

_INTEGER = re.compile(r"-?[0-9]+")


def _query_integer(request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw.strip()):
        raise invalid_filter({name: ["Must be an integer."]})
    return int(raw)


class _StrictPageSize:
    page_size: int
    max_page_size: int
    page_size_query_param = "page_size"

    def get_page_size(self, request) -> int:
        size = _query_integer(request, self.page_size_query_param)
        if size is None:
            return self.page_size
        if not 1 <= size <= self.max_page_size:
            raise invalid_filter(
                {self.page_size_query_param: [f"Must be from 1 to {self.max_page_size}."]}
            )
        return size

    def _page_size_parameter(self, parameters: list[dict]) -> list[dict]:
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                }
        return parameters


class PageNumberPagination(_StrictPageSize, pagination.PageNumberPagination):
    page_size = 50
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        paginator = self.django_paginator_class(queryset, self.get_page_size(request))
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw.strip() in self.last_page_strings:
            number = paginator.num_pages
        else:
            number = _query_integer(request, self.page_query_param)
            number = 1 if number is None else number
        try:
            self.page = paginator.page(number)
        except InvalidPage as exc:
            raise NotFoundError(
                f"There is no page {number}: {exc}",
                code="page_not_found",
                details={"page": number, "pages": paginator.num_pages},
            ) from exc
        return list(self.page)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = self._page_size_parameter(super().get_schema_operation_parameters(view))
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "default": 1}
        return parameters


class LedgerCursorPagination(_StrictPageSize, pagination.CursorPagination):
    """Stable paging over an append-only table, newest first."""

    page_size = 100
    max_page_size = 1000
    ordering = "-id"

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except pagination.NotFound as exc:
            raise invalid_filter({self.cursor_query_param: ["Not a cursor of this list."]}) from exc
        # A well-formed cursor can still carry a position that is no id (a forged `p=abc`),
        # which would only fail in the query.
        if cursor is not None and cursor.position is not None:
            try:
                int(cursor.position)
            except ValueError as exc:
                raise invalid_filter(
                    {self.cursor_query_param: ["Not a cursor of this list."]}
                ) from exc
        return cursor

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return self._page_size_parameter(super().get_schema_operation_parameters(view))
