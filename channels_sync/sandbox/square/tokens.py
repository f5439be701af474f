"""The fake Square's OAuth: issued credentials and `POST /oauth2/token`."""

import hmac
import json
import secrets
import time

from channels_sync.sandbox.square.wire import error_answer, iso
from core.sandbox import SandboxRequest, SandboxResponse

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret


class SquareTokens:
    """Credentials and the token endpoint, mixed into `SquareSandbox`."""

    def credentials(self) -> dict[str, str]:
        """Fresh OAuth credentials for the main location, with newly issued tokens."""
        access, refresh, lifetime = self.issue_tokens()
        return {
            "access_token": access,
            "refresh_token": refresh,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "access_token_expires_at": iso(time.time() + lifetime),
            "location_id": self.location_id,
            "signature_key": self.signature_key,
        }

    def personal_credentials(self) -> dict[str, str]:
        """A personal access token (no refresh token, no expiry), as the Developer Console
        shows one."""
        access = secrets.token_hex(16)
        with self._lock:
            self.access_tokens[access] = float("inf")
        return {
            "access_token": access,
            "location_id": self.location_id,
            "signature_key": self.signature_key,
        }

    def issue_auth_code(self) -> str:
        """An authorisation code, as the seller's consent redirect hands one (single use)."""
        code = secrets.token_hex(12)
        with self._lock:
            self.auth_codes.add(code)
        return code

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_answer(
                400, "INVALID_REQUEST_ERROR", "EXPECTED_JSON_BODY", "The body is not JSON."
            )
        if body.get("client_id") != self.client_id or not hmac.compare_digest(
            str(body.get("client_secret", "")), self.client_secret
        ):
            self.count("auth_refused")
            return error_answer(
                401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "Invalid client credentials."
            )
        grant = body.get("grant_type")
        if grant == "refresh_token":
            refresh = body.get("refresh_token")
            if not self.refresh_consume(refresh, single_use=False):
                self.count("auth_refused")
                return error_answer(
                    401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "Invalid refresh token."
                )
        elif grant == "authorization_code":
            with self._lock:
                valid = body.get("code") in self.auth_codes
                self.auth_codes.discard(body.get("code"))
            if not valid:
                self.count("auth_refused")
                return error_answer(
                    401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "Invalid authorization code."
                )
            refresh = secrets.token_hex(16)
            with self._lock:
                self.refresh_tokens.add(refresh)
        else:
            return error_answer(
                400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", "Bad grant_type.", "grant_type"
            )
        access = secrets.token_hex(16)
        expiry = time.time() + int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = expiry
        return SandboxResponse.json(
            200,
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_at": iso(expiry),
                "merchant_id": self.merchant_id,
                "refresh_token": refresh,
                "short_lived": False,
            },
        )
