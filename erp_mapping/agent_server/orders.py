"""The agent's orders endpoint: `POST /orders` (see `erp_mapping.agent_server`).

What a real agent does with an order SyncStore sends, against a fake ERP kept in memory:

- checks `X-SyncStore-Signature` (`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw
  body>">`) with its own code, against each outbound secret it was given (an agent may
  serve several vendors), within five minutes: otherwise 401 `bad_signature`;
- needs an `Idempotency-Key` (400) and keeps one ERP document per key: the same key again
  answers with the same reference (a different body under a used key: 422);
- `order.create` makes a sales document (`SO-000001`, `DOC-000001`); `order.cancel` cancels
  the document named by the payload's `erp_document_id` (422 `unknown_document` when there
  is none: 401, 403 and 404 are kept for what is wrong with the agent, not the order);
- answers 200 `{"erp_reference", "erp_document_id"}` (mode `sync`) or 202 (mode `async`),
  then calls back `POST {syncstore_url}/api/v1/erp/agents/callback/` (or through an
  in-process `callback_client`) with the vendor's agent token, the body's `job_id` and the
  call's key as `idempotency_key`: when
  `callbacks_release()` is called, or after `callback_delay` seconds.

Faults: `down` (503 to every order; to refuse connections, stop the server), `latency`
(slow answers), `never_call_back` (accept, never call back), `fail_callbacks` (the next N
callbacks report `failed`); the sandbox's generic faults (`inject`) answer any status.
"""

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from core.sandbox import SandboxRequest, SandboxResponse
from erp_mapping.agent_server.signing import signature_valid

CALLBACK_PATH = "/api/v1/erp/agents/callback/"


@dataclass
class ErpDocument:
    """A sales document of the fake ERP."""

    erp_reference: str
    erp_document_id: str
    order_number: str
    lines: int
    status: str = "open"  # open, cancelled
    keys: list[str] = field(default_factory=list)  # the idempotency keys that named it


class AgentOrdersMixin:
    """Takes orders into a fake ERP: checks the signature, answers 200 or 202 (and calls
    back later), with faults."""

    ORDER_OPTIONS = (
        "mode",
        "syncstore_url",
        "callback_delay",
        "down",
        "latency",
        "never_call_back",
        "fail_callbacks",
    )

    def __init__(
        self,
        *,
        secret: str = "",
        callback_token: str = "",
        syncstore_url: str = "",
        callback_client: Any = None,
        mode: str = "sync",
        callback_delay: float | None = None,
        down: bool = False,
        latency: float = 0.0,
        never_call_back: bool = False,
        fail_callbacks: int = 0,
    ) -> None:
        self.erp_orders: dict[str, dict] = {}
        self.documents: list[ErpDocument] = []
        self.credentials: dict[str, str] = {}
        self.callbacks_held: list[tuple[str, dict]] = []
        self.callbacks_sent: list[dict] = []
        self.orders_lock = threading.Lock()
        self.callback_client = callback_client
        self.orders_configure(
            mode=mode,
            syncstore_url=syncstore_url,
            callback_delay=callback_delay,
            down=down,
            latency=latency,
            never_call_back=never_call_back,
            fail_callbacks=fail_callbacks,
        )
        if secret:
            self.credentials_add(secret=secret, callback_token=callback_token)

    # --- set-up ---

    def orders_configure(self, **options: Any) -> dict:
        """Change the orders options (see the module) and return them all."""
        unknown = set(options) - set(self.ORDER_OPTIONS)
        if unknown:
            raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
        if options.get("mode", "sync") not in ("sync", "async"):
            raise ValueError("mode must be sync or async")
        for name, value in options.items():
            setattr(self, f"orders_{name}", value)
        return {name: getattr(self, f"orders_{name}") for name in self.ORDER_OPTIONS}

    def credentials_add(self, *, secret: str, callback_token: str) -> None:
        """Serve one more vendor: check its calls with `secret`, call back with its token."""
        with self.orders_lock:
            self.credentials[secret] = callback_token

    def credentials_replace(self, *, old_secret: str, secret: str, callback_token: str) -> None:
        """The vendor re-registered: its new secret and token replace the old ones."""
        with self.orders_lock:
            self.credentials.pop(old_secret, None)
            self.credentials[secret] = callback_token

    # --- the endpoint ---

    def handle_orders(self, request: SandboxRequest) -> SandboxResponse:
        if request.method != "POST":
            return SandboxResponse.json(405, {"error": "method_not_allowed"})
        header = request.headers.get("X-Syncstore-Signature", "")
        with self.orders_lock:
            credentials = dict(self.credentials)
        secret = next((s for s in credentials if signature_valid(s, header, request.body)), None)
        if secret is None:
            return SandboxResponse.json(401, {"error": "bad_signature"})
        if self.orders_down:
            return SandboxResponse.json(503, {"error": "erp_unavailable"})
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return SandboxResponse.json(400, {"error": "idempotency_key_required"})
        try:
            body = request.json()
            operation, order = body["operation"], body["order"]
            if not isinstance(order, dict):
                raise TypeError("order")
        except (ValueError, KeyError, TypeError):
            return SandboxResponse.json(400, {"error": "bad_body"})
        if self.orders_latency:
            time.sleep(self.orders_latency)
        digest = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()
        with self.orders_lock:
            seen = self.erp_orders.get(key)
            if seen is not None:
                if seen["digest"] != digest:
                    return SandboxResponse.json(422, {"error": "idempotency_key_reused"})
                seen["replays"] += 1
                document = seen["document"]
                return SandboxResponse.json(200, self._answer(document))
            if operation == "order.create":
                number = len(self.documents) + 1
                document = ErpDocument(
                    erp_reference=f"SO-{number:06d}",
                    erp_document_id=f"DOC-{number:06d}",
                    order_number=str(order.get("order_number", "")),
                    lines=len(order.get("lines") or []),
                )
                self.documents.append(document)
            elif operation == "order.cancel":
                document = next(
                    (
                        d
                        for d in self.documents
                        if d.erp_document_id == order.get("erp_document_id")
                    ),
                    None,
                )
                if document is None:
                    return SandboxResponse.json(422, {"error": "unknown_document"})
                document.status = "cancelled"
            else:
                return SandboxResponse.json(400, {"error": "unknown_operation"})
            document.keys.append(key)
            self.erp_orders[key] = {
                "digest": digest,
                "document": document,
                "operation": operation,
                "replays": 0,
            }
            if self.orders_mode == "sync":
                return SandboxResponse.json(200, self._answer(document))
            if not self.orders_never_call_back:
                job_id = body.get("job_id") or key
                self._callback_queue(credentials[secret], job_id, key, document)
        return SandboxResponse.json(202, {"accepted": True, "job_id": key})

    @staticmethod
    def _answer(document: ErpDocument) -> dict:
        return {
            "erp_reference": document.erp_reference,
            "erp_document_id": document.erp_document_id,
        }

    # --- callbacks ---

    def _callback_queue(self, token: str, job_id: str, key: str, document: ErpDocument) -> None:
        """Hold the callback of an accepted order (called with the orders lock held)."""
        about = {"job_id": job_id, "idempotency_key": key}
        if self.orders_fail_callbacks > 0:
            self.orders_fail_callbacks -= 1
            body = {**about, "status": "failed", "error": "the ERP refused the document"}
        else:
            body = {**about, "status": "completed", **self._answer(document)}
        if self.orders_callback_delay is None:
            self.callbacks_held.append((token, body))
            return
        timer = threading.Timer(self.orders_callback_delay, self._callback_send, (token, body))
        timer.daemon = True
        timer.start()

    def callbacks_release(self) -> list[int]:
        """Send the held callbacks now, in order; return the answers' statuses."""
        with self.orders_lock:
            held, self.callbacks_held = self.callbacks_held, []
        return [self._callback_send(token, body) for token, body in held]

    def callbacks_drop(self, count: int) -> int:
        """Lose the first `count` held callbacks (an agent that never calls back about them)."""
        with self.orders_lock:
            dropped = self.callbacks_held[:count]
            del self.callbacks_held[:count]
        return len(dropped)

    def callbacks_replay(self) -> list[int]:
        """Send every callback already sent once more (an agent retrying its callbacks)."""
        with self.orders_lock:
            sent = [
                (entry["token"], entry["body"])
                for entry in self.callbacks_sent
                if not entry["replay"]
            ]
        return [self._callback_send(token, body, replay=True) for token, body in sent]

    def _callback_send(self, token: str, body: dict, *, replay: bool = False) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        if self.callback_client is not None:
            answer = self.callback_client.post(
                CALLBACK_PATH,
                body,
                content_type="application/json",
                HTTP_AUTHORIZATION=headers["Authorization"],
            )
            status = answer.status_code
        else:
            url = self.orders_syncstore_url.rstrip("/") + CALLBACK_PATH
            try:
                status = requests.post(url, json=body, headers=headers, timeout=10).status_code
            except requests.RequestException:
                status = 0
        with self.orders_lock:
            self.callbacks_sent.append(
                {"token": token, "body": body, "status": status, "replay": replay}
            )
        return status

    # --- reading ---

    def documents_created(self) -> int:
        """How many sales documents the ERP holds (one per order, whatever the resends)."""
        with self.orders_lock:
            return len(self.documents)

    def orders_reset(self) -> None:
        with self.orders_lock:
            self.erp_orders.clear()
            self.documents.clear()
            self.callbacks_held.clear()
            self.callbacks_sent.clear()
