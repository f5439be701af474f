"""The ERP part of the staff console: one module per area."""

from erp_mapping.admin import (
    agents,  # noqa: F401
    mappings,  # noqa: F401
    pull,  # noqa: F401
    reconcile,  # noqa: F401
    sync,  # noqa: F401
)
