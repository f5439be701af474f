"""The console's own admin pages (reports), routed inside the admin site."""

from django.contrib.admin import AdminSite
from django.urls import URLPattern, URLResolver


def console_urls(site: AdminSite) -> list[URLResolver | URLPattern]:
    """Return the console's URL patterns, each wrapped in `site.admin_view` (staff only)."""
    return []
