"""The admin site of the operations console: the dashboard as its index, reports beside it."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver


class ConsoleAdminSite(admin.AdminSite):
    site_header = "SyncStore console"
    site_title = "SyncStore"
    index_title = "Operations dashboard"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        from console.dashboard import dashboard_context

        context = {**dashboard_context(request), **(extra_context or {})}
        return super().index(request, extra_context=context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from console.urls import console_urls

        return console_urls(self) + super().get_urls()
