"""The API's JSON parser: DRF's, plus the limits every JSON body is held to.

A body nested deeper than `MAX_JSON_DEPTH` arrays and objects is refused with 400
`invalid_json`: no document of the API comes near it, and deep nesting only serves to exhaust
the recursion of the decoder or of whatever walks the data later (serializers, the JSON
columns, the idempotency fingerprint). A NUL character anywhere in the document, in a key or
a value at any depth, is refused with 400 `validation_error` naming where it is: PostgreSQL
text and JSON columns cannot hold it, and no client sends one on purpose.
"""

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ErrorDetail, ParseError, ValidationError

MAX_JSON_DEPTH = 32
NUL = "\x00"
NUL_MESSAGE = "NUL characters are not allowed."


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "body"


def _nul_error(path: tuple[str | int, ...]) -> ValidationError:
    return ValidationError(
        {_path_text(path): [ErrorDetail(NUL_MESSAGE, code="null_characters_not_allowed")]}
    )


def _depth_error() -> ParseError:
    return ParseError(
        f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
    )


def json_document_check(data: Any) -> None:
    """Refuse a parsed document nested too deep or holding a NUL character.

    Walks the document iteratively (its depth is what is being checked, so no recursion).
    """
    if isinstance(data, str):
        if NUL in data:
            raise _nul_error(())
        return
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if len(path) >= MAX_JSON_DEPTH:
            raise _depth_error()
        for key, item in items:
            if isinstance(key, str) and NUL in key:
                raise _nul_error((*path, key))
            if isinstance(item, str):
                if NUL in item:
                    raise _nul_error((*path, key))
            elif isinstance(item, dict | list):
                stack.append((item, (*path, key)))


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a depth limit and no NUL characters (see the module)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise _depth_error() from exc
        json_document_check(data)
        return data
