import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()

# gunicorn runs no system checks: refuse placeholder secrets before serving a request.
from core.checks import secrets_refuse_unsafe  # noqa: E402

secrets_refuse_unsafe()
