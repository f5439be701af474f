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


class UnstorableOrder(DomainError):
    """A marketplace order whose detail cannot be stored as it is (see `orders.services.clean`).

    Permanent: the same detail fetched again fails the same way; retrying does not help.
    """

    code = "unstorable_order"
    message = "The marketplace order holds a value that cannot be stored."
    permanent = True


class MarketplaceOrder(ConflictError):
    """A marketplace order's state is the marketplace's: staff and the API do not set it."""

    code = "marketplace_order"
    message = (
        "A marketplace order: cancel or ship it on the marketplace; its status comes back "
        "through webhooks and polling."
    )
