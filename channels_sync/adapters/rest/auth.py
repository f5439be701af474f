"""How a custom REST shop's calls are authenticated, and which credentials can do it.

Each auth mode (`options.auth`) needs its own credentials (`AUTH_CREDENTIALS`); a value sent
in an HTTP header as it is must be header-safe, or the HTTP library refuses it on every
attempt (see `credential_problem`).
"""

import base64
import time
from typing import Any

from channels_sync.adapters.rest.signing import signature_header

# Outbound calls with auth `hmac` carry this header.
REQUEST_SIGNATURE_HEADER = "X-Signature"
# What each auth mode needs among the credentials.
AUTH_CREDENTIALS = {
    "bearer": ("token",),
    "basic": ("username", "password"),
    "api_key": ("api_key",),
    "hmac": ("hmac_secret",),
}
# The credentials sent as HTTP header values as they are.
HEADER_CREDENTIALS = frozenset({"token", "api_key"})


class CredentialRefused(ValueError):
    """A credential the auth mode needs is missing or cannot be sent."""


def credential_problem(name: str, value: Any) -> str:
    """What keeps a credential from being used ('' when nothing does): every one is text
    that encodes as UTF-8; a header value (`token`, `api_key`) is printable Latin-1 without
    CR/LF or surrounding spaces (RFC 9110, section 5.5, "Field Values": what HTTP libraries
    send as they are); `username` and `password` are printable, and `username` holds no
    colon (RFC 7617, section 2: the user id ends at the first one)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return f"credential {name} must be text"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"credential {name} is not valid text (a lone surrogate)"
    if name in HEADER_CREDENTIALS and (
        value != value.strip() or not value.isprintable() or any(ord(char) > 0xFF for char in value)
    ):
        return (
            f"credential {name} is sent in an HTTP header: printable Latin-1 characters "
            "only, no line breaks, no leading or trailing spaces"
        )
    if name in ("username", "password") and not value.isprintable():
        return f"credential {name} must hold printable characters only"
    if name == "username" and ":" in value:
        return "credential username must not hold a colon (HTTP Basic ends it at the first)"
    return ""


def credentials_missing(mode: str, credentials: dict[str, Any]) -> list[str]:
    """The credentials auth `mode` needs that are missing or empty."""
    return [n for n in AUTH_CREDENTIALS.get(mode, ()) if not str(credentials.get(n) or "")]


def auth_headers(conf: dict[str, Any], credentials: dict[str, Any], body: bytes) -> dict[str, str]:
    """The headers that authenticate a call with this body under the (checked) options
    `conf`; `CredentialRefused` when a credential the mode needs is missing or unusable
    (credentials stored before they were checked fail here, not in the HTTP library)."""
    mode = conf["auth"]
    missing = credentials_missing(mode, credentials)
    if missing:
        raise CredentialRefused(f"auth {mode} needs the credential {', '.join(missing)}")
    for name in AUTH_CREDENTIALS[mode]:
        problem = credential_problem(name, credentials.get(name))
        if problem:
            raise CredentialRefused(problem)
    get = credentials.get
    if mode == "bearer":
        return {"Authorization": f"Bearer {get('token')}"}
    if mode == "basic":
        pair = f"{get('username')}:{get('password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if mode == "api_key":
        return {conf["api_key_header"]: str(get("api_key"))}
    header = signature_header(secret=str(get("hmac_secret")), timestamp=int(time.time()), body=body)
    return {REQUEST_SIGNATURE_HEADER: header}
