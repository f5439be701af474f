"""Test settings: real PostgreSQL and Redis (from DATABASE_URL / REDIS_URL, or 127.0.0.1).

Unit tests run Celery eagerly; tests marked `worker` switch eager mode off and consume from
the Redis broker with a real worker.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/syncstore")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SLACK_WEBHOOK_URL", "")

from config.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
STATIC_ROOT = None
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Two throwaway keys (not the embedded one) so rotation can be exercised.
FIELD_ENCRYPTION_KEYS = [
    "dGVzdC1rZXktb25lLWZvci1zeW5jc3RvcmUtdGVzdHM=",
    "dGVzdC1rZXktdHdvLWZvci1zeW5jc3RvcmUtdGVzdHM=",
]
# Whatever a developer's `.env` holds (the .env.example placeholder refused by core.E001).
SECRET_KEY = "syncstore-test-settings-key-not-a-placeholder-and-not-embedded"  # noqa: S105
