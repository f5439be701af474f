"""`Idempotency-Key` for state-changing POST endpoints, with Stripe's semantics.

The key is claimed before the view runs (committed at once, so a concurrent duplicate sees
it and answers 409 `idempotency_key_in_progress`). The view then runs in one transaction
that also stores its response, so a committed effect always has its stored response. A
repeat with the same key and body replays that response with `Idempotent-Replayed: true`;
the same key with another body answers 422 `idempotency_key_reused`.

What is stored: the outcomes of executing the operation, success (2xx) and a refusal by the
business rules (409, e.g. `insufficient_stock`). Requests that never executed, because their
input was invalid (400), referred to something missing (404) or failed unexpectedly (5xx),
give their key back so a corrected retry can use it.

A response that shows a secret once (an agent's token) names it in `secret_fields`: the
stored copy holds it encrypted with the field-encryption keys, and a replay shows it again.
"""

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.crypto import keyring
from core.errors import DomainError, error_body
from core.services import idempotency_begin, idempotency_complete, idempotency_release

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def _is_stored(status: int) -> bool:
    return 200 <= status < 300 or status == 409


def request_fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256()
    for part in (request.method, request.get_full_path(), body):
        digest.update(part.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _json_safe(data: Any) -> Any:
    return json.loads(JSONRenderer().render(data))


def _sealed(body: Any, fields: tuple[str, ...]) -> Any:
    if not fields or not isinstance(body, dict):
        return body
    return {
        name: keyring().encrypt(value.encode("utf-8"))
        if name in fields and isinstance(value, str)
        else value
        for name, value in body.items()
    }


def _unsealed(body: Any, fields: tuple[str, ...]) -> Any:
    if not fields or not isinstance(body, dict):
        return body
    return {
        name: keyring().decrypt(value).decode("utf-8")
        if name in fields and isinstance(value, str)
        else value
        for name, value in body.items()
    }


def idempotent(*, required: bool, secret_fields: tuple[str, ...] = ()) -> Callable:
    """Decorate a DRF view method so an `Idempotency-Key` makes it safe to repeat.

    With `required=True` a request without the header answers 400
    `idempotency_key_required`. The view finds the key on `request.idempotency_key`.
    Top-level response fields named in `secret_fields` are stored encrypted.
    """

    def decorator(handler: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(handler)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            key = request.headers.get(HEADER, "").strip()
            request.idempotency_key = key or None
            if not key:
                if required:
                    raise DomainError(
                        f"This endpoint requires an {HEADER} header (e.g. a UUID).",
                        code="idempotency_key_required",
                    )
                return handler(view, request, *args, **kwargs)
            if len(key) > MAX_KEY_LENGTH:
                raise DomainError(
                    f"{HEADER} must be at most {MAX_KEY_LENGTH} characters.",
                    code="idempotency_key_invalid",
                )
            record, fresh = idempotency_begin(
                owner=request.user.owner,
                key=key,
                fingerprint=request_fingerprint(request),
                method=request.method,
                path=request.get_full_path(),
            )
            if not fresh:
                return Response(
                    _unsealed(record.response_body, secret_fields),
                    status=record.response_status,
                    headers={REPLAY_HEADER: "true"},
                )
            try:
                with transaction.atomic():
                    response = handler(view, request, *args, **kwargs)
                    if _is_stored(response.status_code):
                        idempotency_complete(
                            record=record,
                            status=response.status_code,
                            body=_sealed(_json_safe(response.data), secret_fields),
                        )
            except DomainError as exc:
                if _is_stored(exc.status_code):
                    # The operation ran and was refused; its transaction rolled back.
                    idempotency_complete(
                        record=record,
                        status=exc.status_code,
                        body=_json_safe(error_body(exc.code, exc.message, exc.details)),
                    )
                else:
                    idempotency_release(record=record)
                raise
            except BaseException:
                idempotency_release(record=record)
                raise
            if not _is_stored(response.status_code):
                idempotency_release(record=record)
            return response

        return wrapper

    return decorator
