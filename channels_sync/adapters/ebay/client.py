"""eBay REST calls: OAuth tokens (user and application), the bearer call, error classes.

- User token refresh (eBay "Refreshing an access token",
  https://developer.ebay.com/api-docs/static/oauth-refresh-token-request.html):
  `POST {auth}/identity/v1/oauth2/token` with `Authorization: Basic base64(id:secret)` and the
  form `grant_type=refresh_token&refresh_token=..&scope=..`; the answer holds `access_token`
  and `expires_in` (7200 s) and no new refresh token. `invalid_grant` (a refresh token
  revoked or expired, about 18 months after consent) and every other 4xx are `auth`;
  429, 5xx and unreadable answers are `retryable`.
- Application token (client-credentials grant, "Using the client credentials grant",
  https://developer.ebay.com/api-docs/static/oauth-client-credentials-grant.html), needed for
  the notification public key lookup. The grant has a quota of 1,000 a day ("OAuth rate
  limits", https://developer.ebay.com/api-docs/static/oauth-rate-limits.html), so a token is
  kept in process memory until shortly before it expires, never minted per notification, and
  a refused grant is not asked again for a minute.
  It is a bearer secret: it stays out of the shared cache.
- Sell API errors ("Handling errors", https://developer.ebay.com/api-docs/static/handling-error-messages.html):
  HTTP 401 (errorId 1001, invalid or expired token: eBay does not tell them apart) is `auth`
  with `token_expired` (refresh, then re-authorise if the new token is refused too); 403
  (errorId 1100, access denied: the consent lacks a scope) is `auth`; 429 and errorId 2001
  (request limit reached) are `throttled`; 5xx, errorId 25001 (system error) and 25025
  (concurrent access of the inventory item, "try again later") are `retryable`; any other
  4xx is `permanent`.
"""

import base64
import hashlib
import threading
import time
from typing import Any, ClassVar
from urllib.parse import quote

from channels_sync.adapters.base import (
    Adapter,
    AdapterError,
    Outcome,
    answer_int,
    answer_json,
    answer_list,
    answer_text,
)
from core.http import OutboundError

TOKEN_PATH = "/identity/v1/oauth2/token"  # noqa: S105 - a path, not a secret
# The consent a refreshed user token asks for: stock (Sell Inventory API) and orders (Sell
# Fulfillment API). A refresh may ask for the consented scopes or fewer.
USER_SCOPES = (
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
)
APPLICATION_SCOPE = "https://api.ebay.com/oauth/api_scope"
# An application token is taken anew this long before eBay says it expires.
APP_TOKEN_MARGIN_SECONDS = 300

THROTTLE_ERROR_IDS = frozenset({2001})
RETRYABLE_ERROR_IDS = frozenset({25001, 25025})

# A refused client-credentials grant is not asked again for this long (per app and
# process): every notification would otherwise spend one of the grant's 1,000 a day.
APP_TOKEN_REFUSAL_SECONDS = 60

# Process-wide application tokens: (auth base, client id, digest of the secret) -> (token,
# monotonic expiry). One per app and process: a few a day, far under the grant's quota.
_app_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
# The same key -> (the refusal's message, monotonic time until which it is repeated).
_app_token_refusals: dict[tuple[str, str, str], tuple[str, float]] = {}
_app_tokens_lock = threading.Lock()


def app_tokens_forget() -> None:
    """Drop every kept application token and remembered refusal (tests; an app's secret
    was rotated)."""
    with _app_tokens_lock:
        _app_tokens.clear()
        _app_token_refusals.clear()


def error_ids(body: Any) -> list[int]:
    """The `errorId`s of an eBay error answer (`errors[]`), in order; [] for none."""
    if not isinstance(body, dict):
        return []
    ids = []
    for error in answer_list(body.get("errors")):
        if isinstance(error, dict):
            number = answer_int(error.get("errorId"))
            if number is not None:
                ids.append(number)
    return ids


def errors_text(errors: Any) -> str:
    """`errorId message` of each entry of an `errors[]` array, joined; '' for none."""
    parts = []
    for error in answer_list(errors):
        if isinstance(error, dict):
            number = answer_int(error.get("errorId"))
            message = error.get("message") if isinstance(error.get("message"), str) else ""
            parts.append(f"{number if number is not None else '?'} {message}".strip())
    return "; ".join(parts)[:500]


def call_outcome(status: int, body: Any) -> Outcome | None:
    """The outcome of a Sell API answer that failed as a whole; None for a readable 2xx."""
    ids = set(error_ids(body))
    if status == 429 or ids & THROTTLE_ERROR_IDS:
        return Outcome.THROTTLED
    if status >= 500 or ids & RETRYABLE_ERROR_IDS:
        return Outcome.RETRYABLE
    if status in (401, 403):
        return Outcome.AUTH
    if 200 <= status < 300:
        # A 2xx that is not a JSON object: a gateway, not the API, answered.
        return None if isinstance(body, dict) else Outcome.RETRYABLE
    return Outcome.PERMANENT


class EbayClient(Adapter):
    """The calls every eBay feature makes: tokens and bearer-authorised requests."""

    credential_fields = (
        "client_id",
        "client_secret",
        "refresh_token",
        "verification_token",
        "marketplace_id",
        "access_token",
        "access_token_expires_at",
    )
    secret_fields = ("client_secret", "refresh_token", "verification_token", "access_token")
    required_credentials = (
        "client_id",
        "client_secret",
        "refresh_token",
        "verification_token",
        "marketplace_id",
    )
    # eBay's token endpoint lives on the API host itself (api.ebay.com, or
    # api.sandbox.ebay.com for eBay's own sandbox): with no auth base URL, the base URL.
    default_auth_base_url: ClassVar[str] = ""

    # --- user token -----------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Refresh the user access token (refresh-token grant); eBay keeps the refresh token.

        Raises `AdapterError`: `auth` for a refused grant or client (`invalid_grant`,
        `invalid_client`, any other 4xx), `retryable` for transport failures, 429 and 5xx.
        """
        refresh_token = self.credentials.get("refresh_token")
        if not refresh_token:
            raise AdapterError("no refresh token: authorise the seller again", outcome=Outcome.AUTH)
        data = self._token_grant(
            {
                "grant_type": "refresh_token",
                "refresh_token": str(refresh_token),
                "scope": " ".join(USER_SCOPES),
            },
            what="token refresh",
        )
        self.credentials["access_token"] = data["access_token"]
        lifetime = answer_int(data.get("expires_in"))
        self.credentials["access_token_expires_at"] = self.expires_iso(lifetime or 7200)
        return dict(self.credentials)

    def _token_grant(self, form: dict[str, str], *, what: str) -> dict[str, Any]:
        """POST a grant to the token endpoint; return its answer (with an access token)."""
        basic = base64.b64encode(
            f"{self.credentials.get('client_id', '')}:"
            f"{self.credentials.get('client_secret', '')}".encode()
        ).decode()
        try:
            response, _ = self._request(
                "POST",
                f"{self.auth_base_url}{TOKEN_PATH}",
                data=form,
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
        status = response.status_code
        body = answer_json(response)
        if status >= 500 or status == 429 or (body is None and status < 400):
            raise AdapterError(
                f"{what}: HTTP {status} {self.excerpt(response.content)}",
                outcome=Outcome.RETRYABLE,
            )
        if status >= 300 or not answer_text((body or {}).get("access_token"), limit=4096):
            error = answer_text((body or {}).get("error")) or f"HTTP {status}"
            raise AdapterError(
                f"{what} refused: {error} {self.excerpt(response.content)}",
                outcome=Outcome.AUTH,
            )
        return body

    # --- application token ----------------------------------------------------------------

    def _app_token_key(self) -> tuple[str, str, str]:
        secret = str(self.credentials.get("client_secret", "")).encode()
        return (
            self.auth_base_url,
            str(self.credentials.get("client_id", "")),
            hashlib.sha256(secret).hexdigest(),
        )

    def app_digest(self) -> str:
        """A digest naming the eBay application (auth host and client id), whose quotas
        the calls made with its tokens count against."""
        app = f"{self.auth_base_url}|{self.credentials.get('client_id', '')}"
        return hashlib.sha256(app.encode("utf-8", "replace")).hexdigest()[:32]

    def app_token(self, *, fresh: bool = False) -> str:
        """An application access token (client-credentials grant), kept in process memory
        until `APP_TOKEN_MARGIN_SECONDS` before its expiry; `fresh` mints a new one (the
        kept one was refused). Raises `AdapterError` like `token_refresh`; a refused grant
        is remembered `APP_TOKEN_REFUSAL_SECONDS` and raised again without a call."""
        key = self._app_token_key()
        now = time.monotonic()
        with _app_tokens_lock:
            kept = _app_tokens.get(key)
            refusal = _app_token_refusals.get(key)
        if not fresh and kept is not None and kept[1] > now:
            return kept[0]
        if refusal is not None and refusal[1] > now:
            raise AdapterError(refusal[0], outcome=Outcome.AUTH)
        try:
            data = self._token_grant(
                {"grant_type": "client_credentials", "scope": APPLICATION_SCOPE},
                what="application token",
            )
        except AdapterError as exc:
            if exc.outcome == Outcome.AUTH:
                with _app_tokens_lock:
                    _app_token_refusals[key] = (str(exc), now + APP_TOKEN_REFUSAL_SECONDS)
            raise
        lifetime = answer_int(data.get("expires_in")) or 7200
        token = str(data["access_token"])
        expiry = time.monotonic() + max(0, lifetime - APP_TOKEN_MARGIN_SECONDS)
        with _app_tokens_lock:
            _app_tokens[key] = (token, expiry)
            _app_token_refusals.pop(key, None)
        return token

    # --- calls ------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        token: str | None = None,
    ) -> tuple[Any, int]:
        """Send a bearer-authorised call (the user token unless `token` is given); return
        (response, latency ms). Raises `OutboundError`."""
        bearer = token if token is not None else str(self.credentials.get("access_token", ""))
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        kwargs: dict[str, Any] = {"headers": headers}
        if params:
            kwargs["params"] = params
        if body is not None:
            headers["Content-Type"] = "application/json"
            kwargs["json"] = body
        return self._request(method, f"{self.base_url}{path}", **kwargs)

    def _read(self, path: str, *, what: str, params: dict[str, str] | None = None) -> Any:
        """GET a Sell API resource; return (status, JSON body) for a 2xx or a 404, else
        raise a classified `AdapterError` (a 404 is the caller's to read: unknown SKU)."""
        try:
            response, _ = self._call("GET", path, params=params)
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
        body = answer_json(response)
        if response.status_code == 404:
            return 404, body
        outcome = call_outcome(response.status_code, body)
        if outcome is not None:
            raise self.call_error(what, response, outcome)
        return response.status_code, body

    def call_error(self, what: str, response: Any, outcome: Outcome) -> AdapterError:
        """The `AdapterError` of a call that failed as a whole."""
        return AdapterError(
            f"{what}: HTTP {response.status_code} {self.excerpt(response.content)}",
            outcome=outcome,
            token_expired=response.status_code == 401,
            retry_after=(
                self.retry_after_seconds(response.headers.get("Retry-After"))
                if outcome == Outcome.THROTTLED
                else None
            ),
        )


def path_segment(value: str) -> str:
    """A SKU or key id as one URL path segment (every reserved character escaped)."""
    return quote(value, safe="")
