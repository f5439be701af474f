"""Square OAuth: `POST /oauth2/token` with `grant_type=refresh_token` (ObtainToken,
https://developer.squareup.com/reference/square/oauth-api/obtain-token)."""

from typing import Any

from django.conf import settings

from channels_sync.adapters.base import Adapter, AdapterError, Outcome, answer_json, answer_text
from channels_sync.adapters.square.wire import body_json, when
from core.http import OutboundError

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret


def token_refresh(adapter: Adapter) -> dict[str, Any]:
    """Refresh the adapter's access token (see `SquareAdapter.token_refresh`); updates
    `adapter.credentials` and returns a copy of them."""
    credentials = adapter.credentials
    if not credentials.get("refresh_token"):
        raise AdapterError(
            "no refresh token (a personal access token cannot be refreshed): "
            "authorise the seller again or enter a new access token",
            outcome=Outcome.AUTH,
        )
    body = body_json(
        {
            "client_id": str(credentials.get("client_id", "")),
            "client_secret": str(credentials.get("client_secret", "")),
            "grant_type": "refresh_token",
            "refresh_token": str(credentials["refresh_token"]),
        }
    )
    try:
        response, _ = adapter._request(
            "POST",
            f"{adapter.auth_base_url}{TOKEN_PATH}",
            data=body,
            headers={
                "Square-Version": str(settings.SQUARE_API_VERSION),
                "Content-Type": "application/json",
            },
        )
    except OutboundError as exc:
        raise AdapterError(f"token refresh: {exc}", outcome=Outcome.RETRYABLE) from None
    status = response.status_code
    answer = answer_json(response)
    if status >= 500 or status == 429 or (answer is None and status < 400):
        raise AdapterError(
            f"token refresh: HTTP {status} {adapter.excerpt(response.content)}",
            outcome=Outcome.RETRYABLE,
        )
    access = answer_text((answer or {}).get("access_token"), limit=1000)
    if status < 400 and not access:
        # A success without a token is Square's (or a proxy's) fault, not a refusal of our
        # grant: asking again may work, and the refresh token still stands.
        raise AdapterError(
            f"token refresh: HTTP {status} without an access_token "
            f"{adapter.excerpt(response.content)}",
            outcome=Outcome.RETRYABLE,
        )
    if status >= 400:
        raise AdapterError(
            f"token refresh refused: HTTP {status} {adapter.excerpt(response.content)}",
            outcome=Outcome.AUTH,
        )
    credentials["access_token"] = access
    refresh = answer_text(answer.get("refresh_token"), limit=1000)
    if refresh:
        credentials["refresh_token"] = refresh
    expires = when(answer.get("expires_at"))
    if expires is not None:
        credentials["access_token_expires_at"] = expires.isoformat()
    else:
        credentials.pop("access_token_expires_at", None)
    return dict(credentials)
