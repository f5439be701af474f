"""Domain errors of the conflict console, each with a stable code (see core.errors)."""

from core.errors import ConflictError, DomainError, NotFoundError


class ConflictNotFound(NotFoundError):
    code = "conflict_not_found"
    message = "No conflict with this id."


class ConflictNotOpen(ConflictError):
    """The conflict was resolved or ignored already (perhaps a moment ago, by someone else)."""

    code = "conflict_not_open"
    message = "The conflict is no longer open."


class StrategyNotApplicable(ConflictError):
    code = "strategy_not_applicable"
    message = "This strategy does not apply to this conflict."


class NoChannelWarehouse(ConflictError):
    code = "no_channel_warehouse"
    message = "The channel sells from no active warehouse: our stock cannot be moved for it."


class InvalidResolutionValue(DomainError):
    code = "invalid_value"
    message = "The value is missing or not valid for this strategy."


class ConflictStale(ConflictError):
    """The figures of the conflict no longer describe the listing: moving our stock by them
    would count a change twice (a sale since, a push since)."""

    code = "conflict_stale"
    message = "The listing changed since the conflict was seen; reconcile it again."


class ErpManagedStock(ConflictError):
    """The vendor's physical stock comes from its ERP, which wins over a local correction."""

    code = "erp_managed_stock"
    message = "This vendor's stock comes from its ERP: correct it there, or use ours."
