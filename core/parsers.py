"""The API's JSON parser: DRF's, plus the limits every JSON body is held to.

A body nested deeper than `MAX_JSON_DEPTH` arrays and objects is refused with 400
`invalid_json`: no document of the API comes near it, and deep nesting only serves to exhaust
the recursion of the decoder or of whatever walks the data later (serializers, the JSON
columns, the idempotency fingerprint). A NUL character anywhere in the document, in a key or
a value at any depth, is refused with 400 `validation_error` naming where it is: PostgreSQL
text and JSON columns cannot hold it, and no client sends one on purpose. So is a lone UTF-16
surrogate (`"\\ud800"` without its pair): JSON can spell it, but it is no character, and
UTF-8 (what PostgreSQL stores) has no encoding for it.
"""

import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ErrorDetail, ParseError, ValidationError

MAX_JSON_DEPTH = 32
NUL = "\x00"
NUL_MESSAGE = "NUL characters are not allowed."
SURROGATE_MESSAGE = "Unpaired surrogate characters (\\ud800-\\udfff) are not allowed."
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # The answer names the key; what cannot be stored cannot be sent back either.
            part = _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", part)
            text += f".{part}" if text else part
    return text or "body"


def _text_check(text: str, path: tuple[str | int, ...]) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    if found.group() == "\x00":
        detail = ErrorDetail(NUL_MESSAGE, code="null_characters_not_allowed")
    else:
        detail = ErrorDetail(SURROGATE_MESSAGE, code="surrogate_characters_not_allowed")
    raise ValidationError({_path_text(path): [detail]})


def _depth_error() -> ParseError:
    return ParseError(
        f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
    )


def json_document_check(data: Any) -> None:
    """Refuse a parsed document nested too deep or holding a NUL or a lone surrogate.

    Walks the document iteratively (its depth is what is being checked, so no recursion).
    """
    if isinstance(data, str):
        _text_check(data, ())
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
            if isinstance(key, str):
                _text_check(key, (*path, key))
            if isinstance(item, str):
                _text_check(item, (*path, key))
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
