"""Sandboxes: small WSGI fakes of outside systems, served over real HTTP on localhost.

Tests, the demo and the benchmarks talk to these instead of the real services, through the
same HTTP code paths. Each sandbox records what it received, answers in the real system's
wire format, and injects faults on request. Every sandbox has a control API under
`/_sandbox/` (`GET requests`, `POST faults`, `POST reset`) so a separate process can drive
it too (`manage.py sandbox serve`); sandboxes with options also take
`POST /_sandbox/configure` (a JSON object of options, answered with the whole configuration).

Answers are HTTP/1.1, one request per connection (`Connection: close`). A bytes body carries a
Content-Length; a handler may instead answer with an iterable of byte chunks, streamed as it is
produced with chunked transfer encoding, so large answers keep memory flat. A streamed body
that raises `StreamCut` ends the connection there, without the closing chunk: a client sees a
cut-off download as a real one would (the framing says the body is incomplete). Apps register
their sandboxes with `register_sandbox` in their own `sandbox` module; `sandboxes()` imports
every installed app's `sandbox` module first.
"""

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class StreamCut(Exception):
    """Raised by a streamed body to drop the connection mid-body (a cut-off download)."""


@dataclass
class SandboxRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = field(repr=False)
    query_string: str = ""  # as received, still encoded (what a signature over it covers)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass
class SandboxResponse:
    status: int
    body: bytes | str | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(
        cls, status: int, data: Any, headers: dict[str, str] | None = None
    ) -> "SandboxResponse":
        return cls(status, json.dumps(data), headers or {})

    @classmethod
    def text(
        cls, status: int, text: str, headers: dict[str, str] | None = None
    ) -> "SandboxResponse":
        return cls(status, text, headers or {}, content_type="text/plain; charset=utf-8")


@dataclass
class Fault:
    """Answer the next `count` calls with `status` (after `latency` seconds)."""

    status: int = 500
    count: int = 1
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0


class SandboxApp:
    """The base of every sandbox: request log, fault queue, control API."""

    name = "sandbox"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[SandboxRequest] = []
        self._faults: deque[Fault] = deque()

    # --- to override ---

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()

    def configure(self, **options: Any) -> dict:
        """Change the sandbox's options and return its whole configuration.

        Raise `TypeError` or `ValueError` for an unknown option or a bad value (the control
        route answers 400). Sandboxes without options keep this default (404).
        """
        raise NotImplementedError

    def describe(self) -> str:
        """One line for `manage.py sandbox serve`: what to call and how."""
        return getattr(self, "webhook_path", "")

    # --- faults ---

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self._faults.popleft()
            return fault

    # --- WSGI ---

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        request = SandboxRequest(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", "/"),
            query=parse_qs(environ.get("QUERY_STRING", "")),
            headers=headers,
            body=body,
            query_string=environ.get("QUERY_STRING", ""),
        )
        if request.path.startswith("/_sandbox/"):
            response = self._control(request)
        else:
            with self._lock:
                self.requests.append(request)
            fault = self._take_fault()
            if fault is not None:
                if fault.latency:
                    time.sleep(fault.latency)
                response = SandboxResponse(fault.status, fault.body, dict(fault.headers))
            else:
                response = self.handle(request)
        body = response.body
        payload = body.encode("utf-8") if isinstance(body, str) else body
        reason = _STATUS_TEXT.get(response.status, "Status")
        out_headers = [("Content-Type", response.content_type)]
        if isinstance(payload, bytes | bytearray):
            out_headers.append(("Content-Length", str(len(payload))))
        out_headers.extend(response.headers.items())
        start_response(f"{response.status} {reason}", out_headers)
        if isinstance(payload, bytes | bytearray):
            return [payload]
        # A streamed body: the server writes each chunk as the iterable yields it.
        return payload

    def _control(self, request: SandboxRequest) -> SandboxResponse:
        action = request.path.removeprefix("/_sandbox/").strip("/")
        if action == "requests" and request.method == "GET":
            with self._lock:
                return SandboxResponse.json(200, [r.as_dict() for r in self.requests])
        if action == "faults" and request.method == "POST":
            self.inject(Fault(**request.json()))
            return SandboxResponse.json(201, {"queued": True})
        if action == "reset" and request.method == "POST":
            self.reset()
            return SandboxResponse.json(200, {"reset": True})
        if action == "configure" and request.method == "POST":
            try:
                options = request.json()
            except ValueError:
                return SandboxResponse.json(400, {"error": "the body is not JSON"})
            if not isinstance(options, dict):
                return SandboxResponse.json(400, {"error": "the body must be a JSON object"})
            try:
                return SandboxResponse.json(200, self.configure(**options))
            except NotImplementedError:
                return SandboxResponse.json(404, {"error": "this sandbox has no options"})
            except (TypeError, ValueError) as exc:
                return SandboxResponse.json(400, {"error": str(exc)})
        return SandboxResponse.json(404, {"error": "unknown sandbox control"})


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Http11ServerHandler(ServerHandler):
    """wsgiref's handler answering HTTP/1.1: a body without a length goes out chunked.

    wsgiref itself answers HTTP/1.0 and ends a body of unknown length by closing the
    connection, so a client cannot tell a complete body from a cut one. Here every body is
    framed (Content-Length or chunks), and `StreamCut` drops the connection before the
    closing chunk.
    """

    http_version = "1.1"
    _chunked = False

    def cleanup_headers(self) -> None:
        # Hop-by-hop headers are the server's to set (PEP 3333 forbids them to the app).
        unsized = "Content-Length" not in self.headers
        if unsized and self.environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
            self.headers["Transfer-Encoding"] = "chunked"
            self._chunked = True
        self.headers["Connection"] = "close"  # one request per connection (wsgiref's loop)

    def write(self, data: bytes) -> None:
        if not self.headers_sent:
            super().write(b"")  # sends the headers, which decides the framing
        if not self._chunked:
            super().write(data)
        elif data:  # an empty chunk would end the body
            super().write(b"%x\r\n%b\r\n" % (len(data), data))

    def finish_content(self) -> None:
        super().finish_content()
        if self._chunked:
            self._write(b"0\r\n\r\n")
            self._flush()

    def finish_response(self) -> None:
        try:
            super().finish_response()
        except StreamCut:
            # Leave without the closing chunk: the server then closes the socket, which the
            # client sees as a body ending before its end.
            self.close()


class _QuietHandler(WSGIRequestHandler):
    def handle(self) -> None:
        """Handle one request as `WSGIRequestHandler.handle` does, answering HTTP/1.1."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _Http11ServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False
        )
        handler.request_handler = self
        handler.run(self.server.get_app())

    def log_message(self, format: str, *args: Any) -> None:
        pass


class SandboxServer:
    """Serve a sandbox app on localhost in a background thread (port 0: any free port).

    Any WSGI app can be served so (the demo serves the project itself, for the sandboxes'
    webhooks to reach it).
    """

    def __init__(self, app: SandboxApp | Callable, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SandboxServer":
        self._httpd = make_server(
            self.host,
            self.port,
            self.app,
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self.port = self._httpd.server_port
        self._thread = threading.Thread(
            # `shutdown()` waits for the serving loop to notice it: poll often, so stopping
            # a sandbox takes milliseconds, not the default half second.
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"sandbox-{getattr(self.app, 'name', 'app')}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Registry -----------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[[], SandboxApp]] = {}


def register_sandbox(name: str, factory: Callable[[], SandboxApp]) -> None:
    """Make a sandbox known to `sandboxes()` (and `manage.py sandbox`) under `name`."""
    _REGISTRY[name] = factory


def sandboxes() -> dict[str, Callable[[], SandboxApp]]:
    """Every registered sandbox factory by name, after importing each app's `sandbox` module.

    Apps declare their sandboxes in `<app>/sandbox.py` with `register_sandbox`; importing
    them here (once Django's app registry is ready) means no app has to be imported by hand.
    """
    from django.apps import apps
    from django.utils.module_loading import autodiscover_modules

    if apps.ready:
        autodiscover_modules("sandbox")
    return dict(_REGISTRY)


# --- Slack ----------------------------------------------------------------------------------------


class SlackSandbox(SandboxApp):
    """A Slack incoming webhook (https://api.slack.com/messaging/webhooks).

    `POST /services/T.../B.../<token>` with a JSON body holding `text` or `blocks` answers
    200 `ok` (text/plain), as Slack does; a wrong token 403 `invalid_token`, an unknown path
    404 `no_service`, a body without text 400 `no_text`, a non-JSON body 400
    `invalid_payload`.
    """

    name = "slack"
    TEAM, CHANNEL = "T0SANDBOX", "B0SANDBOX"

    def __init__(self, token: str = "sandbox-token") -> None:  # noqa: S107 - a fake
        super().__init__()
        self.token = token
        self.messages: list[dict] = []

    @property
    def webhook_path(self) -> str:
        return f"/services/{self.TEAM}/{self.CHANNEL}/{self.token}"

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.messages.clear()

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        prefix = f"/services/{self.TEAM}/{self.CHANNEL}/"
        if request.method != "POST" or not request.path.startswith(prefix):
            return SandboxResponse.text(404, "no_service")
        if request.path != self.webhook_path:
            return SandboxResponse.text(403, "invalid_token")
        try:
            message = request.json()
        except ValueError:
            return SandboxResponse.text(400, "invalid_payload")
        if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
            return SandboxResponse.text(400, "no_text")
        with self._lock:
            self.messages.append(message)
        return SandboxResponse.text(200, "ok")


register_sandbox("slack", SlackSandbox)
