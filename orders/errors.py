"""Domain errors of the orders, each with a stable code (see core.errors)."""

from core.errors import ConflictError, DomainError, NotFoundError


class OrderNotFound(NotFoundError):
    code = "order_not_found"
    message = "No order with this id."


class OrderExists(ConflictError):
    code = "order_exists"
    message = "The vendor already has an order with this number."


class InvalidTransition(ConflictError):
    code = "invalid_transition"
    message = "The order cannot make this change from its current status."


class OrderInsufficientStock(ConflictError):
    """An API order some of whose lines lack available stock; `details.lines` names them."""

    code = "insufficient_stock"
    message = "Not enough stock available for some lines; nothing was reserved."


class UnknownSku(DomainError):
    code = "unknown_sku"
    message = "A line names a SKU the vendor does not have."


class UnknownWarehouse(DomainError):
    code = "unknown_warehouse"
    message = "A line names a warehouse the vendor does not have."


class LineAlreadyMapped(ConflictError):
    code = "line_already_mapped"
    message = "The line already holds stock of a product."


class LineNotReturned(ConflictError):
    code = "line_not_returned"
    message = "Only a returned line can be restocked."
