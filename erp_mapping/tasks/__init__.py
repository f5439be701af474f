"""ERP Celery tasks (thin shells over the services), one module per area."""
