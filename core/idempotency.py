"""`Idempotency-Key` for state-changing POST endpoints, with Stripe's semantics.

The key is claimed inside the transaction that runs the view and stores its response: one
commit makes the claim, the effect and the stored response durable together (the unique
constraint on owner and key arbitrates). A concurrent duplicate waits on that index until
the first request's transaction ends, then replays its response. A repeat with the same key
and body replays the stored response with `Idempotent-Replayed: true`; the same key with
another body answers 422 `idempotency_key_reused`.

What is stored: the outcomes of executing the operation, success (2xx) and a refusal by the
business rules (409, e.g. `insufficient_stock`). Requests that never executed, because their
input was invalid (400), referred to something missing (404) or failed unexpectedly (5xx),
roll back with their claim, so a corrected retry can use the key.

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

from core.crypto import DecryptionError, keyring
from core.errors import ConflictError, DomainError, error_body
from core.services.idempotency import idempotency_claim, idempotency_complete

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
    try:
        return {
            name: keyring().decrypt(value).decode("utf-8")
            if name in fields and isinstance(value, str)
            else value
            for name, value in body.items()
        }
    except DecryptionError as exc:
        # The key that sealed the stored answer was retired from FIELD_ENCRYPTION_KEYS.
        raise ConflictError(
            "The first answer to this Idempotency-Key can no longer be shown (its encryption "
            "key was retired); send the request again with a new key.",
            code="idempotency_key_unreplayable",
        ) from exc


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
            fingerprint = request_fingerprint(request)
            refusal: DomainError | None = None
            with transaction.atomic():
                record, fresh = idempotency_claim(
                    owner=request.user.owner,
                    key=key,
                    fingerprint=fingerprint,
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
                    # A savepoint: a refusal undoes the view's writes but keeps the claim,
                    # which stores the refusal. Anything else unwinds the whole transaction.
                    with transaction.atomic():
                        response = handler(view, request, *args, **kwargs)
                except DomainError as exc:
                    if not _is_stored(exc.status_code):
                        raise
                    idempotency_complete(
                        record=record,
                        status=exc.status_code,
                        body=_json_safe(error_body(exc.code, exc.message, exc.details)),
                    )
                    refusal = exc
                else:
                    if _is_stored(response.status_code):
                        idempotency_complete(
                            record=record,
                            status=response.status_code,
                            body=_sealed(_json_safe(response.data), secret_fields),
                        )
                    else:
                        # The request did not execute: give the key back with the rest.
                        transaction.set_rollback(True)
            if refusal is not None:
                raise refusal
            return response

        return wrapper

    return decorator
