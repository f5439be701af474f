"""Channel options of a custom REST shop channel that speaks to the REST shop sandbox
(`channels_sync.sandbox.rest`): its stock, read-back and order endpoints and answer paths.

`PER_ITEM` sends one `PUT /api/v1/inventory/<sku>` per listing, `BATCH` one `POST
/api/v1/inventory/batch` per batch; both read stock back in batches and list and fetch
orders. Give either as a channel's `options` (type `rest`, auth `bearer`, the sandbox's
`credentials()`).
"""

READ = {
    "path": "/api/v1/inventory",
    "mode": "batch",
    "query": {"skus": "{{skus}}"},
    "sku": "items[].sku",
    "quantity": "items[].available",
}
ORDERS = {
    "list": {
        "path": "/api/v1/orders",
        "query": {
            "updated_since": "{{since}}",
            "updated_until": "{{until}}",
            "page": "{{page}}",
        },
        "id": "orders[].id",
        "status": "orders[].status",
        "updated_at": "orders[].updated_at",
    },
    "fetch": {
        "path": "/api/v1/orders/{{order_id}}",
        "id": "id",
        "status": "status",
        "number": "number",
        "placed_at": "created_at",
        "paid_at": "paid_at",
        "updated_at": "updated_at",
        "currency": "currency",
        "sku": "lines[].sku",
        "quantity": "lines[].quantity",
        "line_id": "lines[].id",
        "price": "lines[].price",
        "name": "lines[].title",
    },
    "status_map": {
        "pending": "pending_payment",
        "paid": "paid",
        "packed": "ready_to_ship",
        "shipped": "shipped",
        "delivered": "delivered",
        "completed": "completed",
        "cancelled": "cancelled",
    },
}
PER_ITEM = {
    "auth": "bearer",
    "stock": {
        "path": "/api/v1/inventory/{{sku}}",
        "method": "PUT",
        "mode": "per_item",
        "body": {"quantity": "{{quantity}}"},
        "ok": "ok",
        "error": "error",
    },
    "read": READ,
    "orders": ORDERS,
}
BATCH = {
    "auth": "bearer",
    "stock": {
        "path": "/api/v1/inventory/batch",
        "method": "POST",
        "mode": "batch",
        "body": {"request_id": "{{idempotency_key}}", "items": "{{items}}"},
        "item": {"sku": "{{sku}}", "qty": "{{quantity}}"},
        "ok": "results[].ok",
        "error": "results[].error",
        "sku": "results[].sku",
    },
    "read": READ,
    "orders": ORDERS,
}
