"""Orders to the ERP: one sync job per (order, operation), sent to the vendor's agent.

A confirmed order gets its `order.create` job once (the unique (order, operation)), on the
commit of the "order confirmed" hook; a cancelled order whose create job exists gets its
`order.cancel` job the same way. A cancel never overtakes its create: while the create job
is not completed the cancel waits (no attempt used) and follows as soon as the create
completes; an order cancelled before its create was sent is still created in the ERP and
then cancelled there. A cancel whose create is dead is dead too (its own dead letter); it
is revived by itself when the create is revived and completes.

The payload is built at the job's first send, from the order as it is then, and kept: every
resend carries the same body under the same key. Sending (`erp_sync_send`) claims the job
with a conditional UPDATE that sets `processing` and a lease (`locked_until`): two workers
never send one job at once. Held without using an attempt (`wait_reason`, one `waiting`
event per reason) while:

- the vendor has no agent, or its agent no outbound secret (an alert per agent);
- the order `needs_mapping`, or is named in an open `duplicate_order` conflict (create);
- the order's create job is not completed (cancel);
- the vendor's circuit is open (`AgentUnavailable`), until it lets a trial through;
- the agent answered 401, 403 or 404: a fault of the agent's set-up (a secret it lacks, a
  wrong URL), not of this job: the failure counts on the circuit and one alert per vendor
  says what to fix.

The agent gets `POST {agent_url}/orders` with the job's `idempotency_key` (a UUID) as
`Idempotency-Key` (it keeps one document per key, so a resend is harmless) and a signature.
Its answer decides:

- 200 with `erp_reference`: completed; the order's ERP fields are written.
- 202: `awaiting_callback`; the agent calls back (`erp_sync_callback`). Without a callback
  in `ERP_CALLBACK_TIMEOUT` the sweep sends it again. A `failed` callback that overtakes
  the worker's record of the 202 is kept on the job and applied when the 202 is recorded.
- no answer, 5xx, 408, 429: `failed`, tried again after an exponential backoff with jitter;
  after `ERP_SYNC_MAX_ATTEMPTS` attempts `dead`, with a dead letter.
- another 4xx (400, 409, 422): a refusal that repeating will not change: `dead` at once.

The sweep (`erp_sync_sweep`, beat) is the one scheduler of retries (see its docstring).
Every change of a job writes an `ErpSyncEvent` in the same transaction. A dead job is
retried from the dead-letter console (`erp_mapping.erp_sync_send` with `revive`) or the job
admin: its payload is rebuilt from the order as it is now and sent under a new key.
"""

from erp_mapping.services.erp_sync.base import (
    DEAD_LETTER_TASK,
    SYNC_OUTCOMES,
    ErpReferenceConflict,
    ErpSyncFailed,
    ErpSyncJobCompleted,
    ErpSyncJobNotFound,
)
from erp_mapping.services.erp_sync.callback import CallbackResult, erp_sync_callback
from erp_mapping.services.erp_sync.jobs import (
    erp_sync_job_create,
    order_cancelled_listener,
    order_confirmed_listener,
    order_payload,
    send_enqueue,
)
from erp_mapping.services.erp_sync.send import (
    SendResult,
    agent_refused_alert,
    agent_unsigned_alert,
    erp_sync_send,
)
from erp_mapping.services.erp_sync.staff import (
    erp_sync_job_retry,
    erp_sync_job_send_now,
    erp_sync_revive_and_send,
)
from erp_mapping.services.erp_sync.sweep import SweepReport, erp_sync_sweep

__all__ = [
    "DEAD_LETTER_TASK",
    "SYNC_OUTCOMES",
    "CallbackResult",
    "ErpReferenceConflict",
    "ErpSyncFailed",
    "ErpSyncJobCompleted",
    "ErpSyncJobNotFound",
    "SendResult",
    "SweepReport",
    "agent_refused_alert",
    "agent_unsigned_alert",
    "erp_sync_callback",
    "erp_sync_job_create",
    "erp_sync_job_retry",
    "erp_sync_job_send_now",
    "erp_sync_revive_and_send",
    "erp_sync_send",
    "erp_sync_sweep",
    "order_cancelled_listener",
    "order_confirmed_listener",
    "order_payload",
    "send_enqueue",
]
