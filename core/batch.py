"""One envelope for every batch endpoint: the size check, the per-row result, the counts.

A batch body is a JSON object holding a list of rows (`rows`; a mapping seed's `mappings`).
A list longer than the endpoint's maximum is refused whole with 400 `batch_too_large` and
`details: {"max": ..., "received": ...}`, before any row is looked at.

The answer holds one result per row, in order, each
`{"index", "status", "code", "message", "field", ...}`: `index` is the row's position
(0-based), `status` what happened to it (each endpoint keeps its own statuses), `code`,
`message` and `field` say why a row was refused (empty strings otherwise), and
endpoint-specific fields follow. `counts` gives the rows per status, every status present.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from rest_framework import serializers

from core.errors import DomainError

BATCH_TOO_LARGE = "batch_too_large"


def batch_size_check(rows: Any, *, limit: int) -> None:
    """Refuse a list of more than `limit` rows (400 `batch_too_large`)."""
    if isinstance(rows, list) and len(rows) > limit:
        raise DomainError(
            f"A batch holds at most {limit:,} rows; this one has {len(rows):,}.",
            code=BATCH_TOO_LARGE,
            details={"max": limit, "received": len(rows)},
        )


def batch_rows(data: Any, *, limit: int, key: str = "rows") -> list:
    """The rows of a batch body, or 400 `invalid_body` (no object with a `key` list) or
    `batch_too_large`."""
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise DomainError(
            f'The body must be a JSON object with a "{key}" list.', code="invalid_body"
        )
    batch_size_check(rows, limit=limit)
    return rows


def row_result(
    index: int, status: str, *, code: str = "", message: str = "", field: str = "", **extra: Any
) -> dict[str, Any]:
    """One row's result in the shared shape; `extra` holds the endpoint's own fields."""
    return {
        "index": index,
        "status": status,
        "code": code,
        "message": message,
        "field": field,
        **extra,
    }


def batch_counts(results: Iterable[dict[str, Any]], statuses: Sequence[str]) -> dict[str, int]:
    """Rows per status, every status of `statuses` present."""
    counts = dict.fromkeys(statuses, 0)
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return counts


def batch_answer(
    results: list[dict[str, Any]], statuses: Sequence[str], **extra: Any
) -> dict[str, Any]:
    """A batch's answer: `extra` fields, then `counts` and the per-row `results`."""
    return {**extra, "counts": batch_counts(results, statuses), "results": results}


# --- Documentation (OpenAPI) ------------------------------------------------------------------


class BatchRowResultSerializer(serializers.Serializer):
    """The shared per-row result; endpoints subclass it to name their statuses and fields."""

    index = serializers.IntegerField(help_text="The row's position (0-based) in the batch.")
    status = serializers.CharField()
    code = serializers.CharField(
        allow_blank=True, help_text="Why the row was refused; empty otherwise."
    )
    message = serializers.CharField(allow_blank=True)
    field = serializers.CharField(
        allow_blank=True, help_text="The row's field at fault, when one is; empty otherwise."
    )


def status_choices(statuses: Sequence[str]) -> serializers.ChoiceField:
    return serializers.ChoiceField(choices=[(status, status) for status in statuses])


def counts_field() -> serializers.DictField:
    return serializers.DictField(
        child=serializers.IntegerField(), help_text="Rows per status (every status present)."
    )
