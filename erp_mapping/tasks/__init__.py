"""ERP Celery tasks (thin shells over the services), one module per area."""

from erp_mapping.tasks import pull  # noqa: F401
