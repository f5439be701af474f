"""Domain errors of the inventory, each with a stable code (see core.errors)."""

from decimal import Decimal

from core.errors import ConflictError, DomainError, NotFoundError


class InsufficientStock(ConflictError):
    code = "insufficient_stock"
    message = "Not enough stock available."

    def __init__(self, *, sku: str, warehouse: str, available: Decimal, requested: Decimal) -> None:
        super().__init__(
            f"Only {available} of {sku} available in {warehouse}; {requested} requested.",
            details={
                "sku": sku,
                "warehouse": warehouse,
                "available": str(available),
                "requested": str(requested),
            },
        )


class ProductNotFound(NotFoundError):
    code = "product_not_found"
    message = "No product with this SKU."


class WarehouseNotFound(NotFoundError):
    code = "warehouse_not_found"
    message = "No warehouse with this code."


class VendorNotFound(NotFoundError):
    code = "vendor_not_found"
    message = "No vendor with this id."


class ReservationNotFound(NotFoundError):
    code = "reservation_not_found"
    message = "No reservation with this id."


class ReservationNotActive(ConflictError):
    code = "reservation_not_active"
    message = "The reservation is no longer active."


class ReservationOwnedByOrder(ConflictError):
    """The reservation holds an order line's stock: the order releases or commits it."""

    code = "reservation_owned_by_order"
    message = (
        "The reservation holds an order's stock; cancel or ship the order instead "
        "(a marketplace order: on the marketplace)."
    )


class WarehouseInactive(ConflictError):
    code = "warehouse_inactive"
    message = "The warehouse is inactive."


class InvalidQuantity(DomainError):
    code = "invalid_quantity"
    message = "The quantity is not valid for this operation."


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"
    message = "This idempotency key was already used for a different operation."
