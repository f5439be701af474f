"""A custom REST shop: a merchant's own shop, or any system with a JSON API, configured in
the channel's `options` (not secret) and `credentials` (secret) instead of coded.

Options (checked by `options_clean`; a refusal names the option, as `invalid_options`):

    {
      "auth": "bearer" | "basic" | "api_key" | "hmac",
      "api_key_header": "X-Api-Key",               # auth api_key only (this default)
      "stock": {
        "path": "/inventory/{{sku}}", "method": "PUT",          # POST (default), PUT, PATCH
        "mode": "per_item",                # one call a listing (default) | "batch": a list
        "body": {"quantity": "{{quantity}}"},       # per_item: the body
        # batch: "body" is the envelope, holding "{{items}}"; "item" is each item's template
        "ok": "ok", "ok_value": true, "error": "error",         # answer paths (optional)
        "sku": "results[].sku"             # batch: match answer rows by SKU (else by position)
      },
      "read": {
        "path": "/inventory", "method": "GET", "mode": "batch", "batch_size": 50,
        "query": {"skus": "{{skus}}"},              # or "body" (POST)
        "sku": "items[].sku", "quantity": "items[].available"
      },
      "orders": {                                   # optional: polling and order webhooks
        "list": {"path": "/orders", "query": {"updated_since": "{{since}}",
                 "updated_until": "{{until}}", "page": "{{page}}"},
                 "id": "orders[].id", "status": "orders[].status",
                 "updated_at": "orders[].updated_at"},
        "fetch": {"path": "/orders/{{order_id}}", "id": "id", "status": "status",
                  "sku": "lines[].sku", "quantity": "lines[].quantity",
                  "line_id": "lines[].id", "price": "lines[].price"},
        "status_map": {"pending": "pending_payment", "paid": "paid", "cancelled": "cancelled"}
      }
    }

Placeholders: stock templates and a per_item path take `{{sku}}`, `{{quantity}}`,
`{{location}}`, `{{variant_id}}`, `{{expected}}` (what the shop showed last
as far as we know, null when unknown: a shop may use it as compare-and-set) and
`{{idempotency_key}}`; a batch envelope takes `{{items}}`, `{{count}}`,
`{{idempotency_key}}`. A per_item read takes the listing's keys; a batch read `{{skus}}`
(a list; joined with commas in a query). The order list takes `{{since}}`,
`{{until}}` (ISO-8601 UTC), `{{since_unix}}`, `{{until_unix}}`, and pages by `{{page}}`
(1, 2, ... until an empty page) or `{{cursor}}` (with the answer path `cursor`); the
detail takes `{{order_id}}`. Answer paths and templates: `paths`.

Credentials by auth: `bearer` -> `token` (`Authorization: Bearer`); `basic` -> `username`,
`password`; `api_key` -> `api_key` (sent in `api_key_header`); `hmac` -> `hmac_secret`:
`X-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>` (an empty body
for GET). `webhook_secret` signs the shop's webhooks. The credentials the auth mode needs
are required when a channel is saved (`settings_check`); `token` and `api_key` travel in a
header as they are, so they must be printable Latin-1 without line breaks
(`credentials_clean`, `auth.credential_problem`). Every call also carries
`Idempotency-Key` (Stripe's convention: https://docs.stripe.com/api/idempotent_requests),
unique to the call's attempt.

Outcomes: 2xx is read with the answer paths (none: every item applied): a row whose `ok`
is not `ok_value` (default true) or whose `error` is non-empty failed (partial); an answer
the paths cannot read is retryable, the error naming the path. 429 throttled (Retry-After
honoured), 401/403 auth (nothing to refresh: the channel is flagged for new credentials),
408 and 5xx and transport failures retryable, any other 4xx permanent.

Webhooks (`POST` to the channel's webhook URL), signed the way Stripe signs
(https://docs.stripe.com/webhooks#verify-manually): `X-SyncStore-Signature:
t=<unix>,v1=<hex>[,v1=<hex>...]`, hex HMAC-SHA256 of `"<t>." + raw body` keyed with the
`webhook_secret`. Any matching `v1` is accepted (constant time); a `t` more than 5 minutes
old or ahead is refused (401). The body:

    {"id": "evt_1", "type": "order.updated", "created": 1767225600,
     "data": {"order_id": "1001", "status": "paid", "updated_at": "2026-01-01T00:00:00Z"}}
    {"id": "evt_2", "type": "stock.updated", "created": 1767225600,
     "data": {"items": [{"sku": "TEE-RED-M", "quantity": 5, "location": "main"}]}}

`id` is the event's key: an event delivered again is answered 200 and stored once. The
signature (its `t` and the matching `v1`, as the check read them: other parts of the header
make no difference) is the request's nonce, remembered 10 minutes: the same signed request
received twice is a replay, answered from the event store (200 when its event is stored,
else taken as a first delivery: the first one never stored it), so a replay never stores an
event twice nor loses one. A header with two `t` is refused (401). A shop signs every
delivery attempt afresh (a new `t`), as Stripe does. Without Redis the nonce is not
remembered; the timestamp window and the event-id deduplication still hold. `quantity`
null in a stock event: the stock is read back. Other types are kept and ignored; order
events need `orders` configured (else they are ignored too).
"""

from channels_sync.adapters.rest.adapter import RestAdapter

__all__ = ["RestAdapter"]
