"""Answer paths and body templates of a custom REST shop (no eval, no expressions).

Answer paths read a value out of a JSON answer:

- names separated by dots, each 1..64 letters, digits, `_` or `-`: `data.quantity`;
- `[]` after a name takes each element of that array as one row: `results[].ok` reads `ok`
  of every element of `results`; `[]` alone as the first part says the answer itself is
  the array (`[].sku`);
- at most one `[]` per path; what comes before it (`results[]`) is the path's rows, what
  comes after it (`ok`) is read from each row.

Templates are JSON values in which a string may hold placeholders `{{name}}`. A string that
is exactly one placeholder becomes the value with its type (`"{{quantity}}"` -> 7, a number;
`"{{items}}"` -> a list); a placeholder inside longer text is replaced by the value as text
(null as ''). Object keys may hold placeholders too (as text).
"""

import json
import re
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
PATH_MAX = 200
PATH_PARTS_MAX = 12
TEMPLATE_DEPTH_MAX = 8
TEMPLATE_CHARS_MAX = 10_000


class AnswerUnreadable(ValueError):
    """An answer the configured path cannot read (the message names the path)."""


@dataclass(frozen=True)
class AnswerPath:
    """A parsed answer path: `rows` leads to the array (None: no `[]`), `field` is read from
    each row (or from the answer when there are no rows)."""

    text: str
    rows: tuple[str, ...] | None
    field: tuple[str, ...]

    @property
    def has_rows(self) -> bool:
        return self.rows is not None


def path_parse(text: Any, *, where: str) -> AnswerPath:
    """Parse an answer path, or raise `ValueError` naming `where` and what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{where} must be a string (an answer path such as results[].ok)")
    if not text or len(text) > PATH_MAX:
        raise ValueError(f"{where} must be 1 to {PATH_MAX} characters")
    parts = text.split(".")
    if len(parts) > PATH_PARTS_MAX:
        raise ValueError(f"{where} has more than {PATH_PARTS_MAX} parts")
    rows: tuple[str, ...] | None = None
    names: list[str] = []
    for index, part in enumerate(parts):
        name, iterates = (part[:-2], True) if part.endswith("[]") else (part, False)
        if name and not NAME.fullmatch(name):
            raise ValueError(
                f"{where}: `{part}` is not a name (letters, digits, _ and - only, "
                "optionally followed by [])"
            )
        if not name and not (iterates and index == 0):
            raise ValueError(f"{where}: empty part in `{text}`")
        if name:
            names.append(name)
        if iterates:
            if rows is not None:
                raise ValueError(f"{where}: at most one [] in a path")
            rows = tuple(names)
            names = []
    if rows is not None and not names and len(parts) > 1:
        raise ValueError(f"{where}: nothing to read after []")
    return AnswerPath(text=text, rows=rows, field=tuple(names))


def _walk(value: Any, names: tuple[str, ...]) -> tuple[bool, Any]:
    for name in names:
        if not isinstance(value, dict) or name not in value:
            return False, None
        value = value[name]
    return True, value


def path_rows(answer: Any, path: AnswerPath) -> list[Any]:
    """The rows a path's `[]` names in an answer; `AnswerUnreadable` when they are not an
    array."""
    found, rows = _walk(answer, path.rows or ())
    if not found or not isinstance(rows, list):
        raise AnswerUnreadable(f"answer path `{path.text}`: no array at `{_rows_text(path)}`")
    return rows


def path_value(row: Any, path: AnswerPath, *, required: bool = True) -> Any:
    """The value a path's field names in a row (or in the whole answer, for a path without
    `[]`). Absent: `AnswerUnreadable` when `required`, else None."""
    found, value = _walk(row, path.field)
    if not found:
        if required:
            raise AnswerUnreadable(f"answer path `{path.text}`: nothing at `{path.text}`")
        return None
    return value


def _rows_text(path: AnswerPath) -> str:
    return ".".join(path.rows or ()) + "[]"


# --- templates ----------------------------------------------------------------------------------


def template_check(template: Any, *, where: str, allowed: frozenset[str]) -> set[str]:
    """Check a body template; return the placeholders it uses. Raises `ValueError` naming
    `where` for an unknown placeholder, nesting deeper than `TEMPLATE_DEPTH_MAX`, or a
    template longer than `TEMPLATE_CHARS_MAX` characters of JSON."""
    used: set[str] = set()
    _template_walk(template, where=where, allowed=allowed, used=used, depth=0)
    try:
        size = len(json.dumps(template))
    except (ValueError, TypeError, RecursionError):
        raise ValueError(f"{where} is not a JSON value") from None
    if size > TEMPLATE_CHARS_MAX:
        raise ValueError(f"{where} is longer than {TEMPLATE_CHARS_MAX} characters of JSON")
    return used


def _template_walk(
    value: Any, *, where: str, allowed: frozenset[str], used: set[str], depth: int
) -> None:
    if depth > TEMPLATE_DEPTH_MAX:
        raise ValueError(f"{where} is nested deeper than {TEMPLATE_DEPTH_MAX} levels")
    if isinstance(value, str):
        used.update(text_placeholders(value, where=where, allowed=allowed))
    elif isinstance(value, dict):
        for key, item in value.items():
            used.update(text_placeholders(str(key), where=where, allowed=allowed))
            _template_walk(item, where=where, allowed=allowed, used=used, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _template_walk(item, where=where, allowed=allowed, used=used, depth=depth + 1)
    elif value is not None and not isinstance(value, bool | int | float):
        raise ValueError(f"{where} is not a JSON value")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError(f"{where} holds a number JSON cannot carry")


def text_placeholders(text: str, *, where: str, allowed: frozenset[str]) -> set[str]:
    """The placeholders of a text; `ValueError` for an unknown one or a stray `{{`/`}}`."""
    names = set(PLACEHOLDER.findall(text))
    unknown = sorted(names - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown placeholder {{{{{unknown[0]}}}}} "
            f"(known here: {', '.join(sorted(allowed)) or 'none'})"
        )
    rest = PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"{where}: a placeholder is not closed or not a name: {text[:80]!r}")
    return names


def template_fill(template: Any, values: dict[str, Any]) -> Any:
    """The template with its placeholders replaced by `values` (see the module)."""
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            return values.get(whole.group(1))
        return text_fill(template, values)
    if isinstance(template, dict):
        return {text_fill(str(k), values): template_fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [template_fill(item, values) for item in template]
    return template


def text_fill(text: str, values: dict[str, Any], quote: Any = None) -> str:
    """Replace each placeholder of a text by its value as text (`quote` encodes it)."""

    def one(match: re.Match) -> str:
        value = as_text(values.get(match.group(1)))
        return quote(value) if quote is not None else value

    return PLACEHOLDER.sub(one, text)


def as_text(value: Any) -> str:
    """A value as it goes into text: '' for null, true/false for booleans, commas between
    the items of a list."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(as_text(item) for item in value)
    return str(value)
