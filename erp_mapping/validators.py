"""Validators of the ERP app's inputs (the URL check is shared, from `core`)."""

from core.validators import http_url_validate

__all__ = ["http_url_validate"]
