"""ERP Celery tasks (thin shells over the services), one module per area."""

from erp_mapping.tasks import (
    agents,  # noqa: F401
    pull,  # noqa: F401
    reconcile,  # noqa: F401
    sync,  # noqa: F401
)
