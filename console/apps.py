from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConsoleConfig(AppConfig):
    default = True
    name = "console"
    verbose_name = "Operations console"


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the console's site as `admin.site` (the documented override)."""

    default = False

    default_site = "console.site.ConsoleAdminSite"
