"""Who is acting: the user, API key or agent behind the current request, else the system.

`ActorMiddleware` keeps the current request in a context variable; `current_actor()` reads
who is behind it when asked (after DRF or the session has authenticated the caller), so a
service can stamp its audit row without every caller passing an actor. `actor_scope()` names
the actor of a block explicitly (a management command, a task acting for someone).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

SYSTEM = "system"

_request: ContextVar[HttpRequest | None] = ContextVar("syncstore_request", default=None)
_explicit: ContextVar[str | None] = ContextVar("syncstore_actor", default=None)


def actor_of_user(user: object) -> str:
    """The actor string of a Django user or an API principal."""
    named = getattr(user, "actor", None)
    if isinstance(named, str) and named:
        return named  # an API principal (api_key:<name>) or an agent principal
    if getattr(user, "is_authenticated", False):
        return f"user:{user.get_username()}"  # type: ignore[attr-defined]
    return SYSTEM


def current_actor() -> str:
    """Return the actor of the current block, request or task (`system` when nobody)."""
    explicit = _explicit.get()
    if explicit:
        return explicit
    request = _request.get()
    if request is None:
        return SYSTEM
    user = getattr(request, "user", None)
    return actor_of_user(user) if user is not None else SYSTEM


@contextmanager
def actor_scope(actor: str) -> Iterator[str]:
    """Name the actor for the duration of a block; restored after."""
    token = _explicit.set(actor)
    try:
        yield actor
    finally:
        _explicit.reset(token)


class ActorMiddleware:
    """Keep the request in a context variable so services can tell who is acting."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
