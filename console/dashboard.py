"""The dashboard: what the admin index shows above the app list."""

from django.http import HttpRequest


def dashboard_context(request: HttpRequest) -> dict:
    """Return the template context of the dashboard's tiles and charts."""
    return {}
