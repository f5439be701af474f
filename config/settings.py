"""SyncStore settings.

Every value comes from the environment (django-environ) with an embedded default, so that
a fresh checkout runs on SQLite with eager Celery and local-memory caches, and production
runs on PostgreSQL and Redis by setting `DATABASE_URL`, `REDIS_URL` and
`CELERY_BROKER_URL`. `.env.example` documents every variable.
"""

import logging
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

from core.logging import build_logging_config, configure_structlog
from core.secrets import SecretStr

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

# --- Django core -------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The embedded default key is for the SQLite demo only; `manage.py check --deploy` and the
# `core.W001` check flag it when DEBUG is off. Set but empty means unset (as the Makefile's
# demo does), so the demo runs on its embedded keys whatever `.env` holds.
EMBEDDED_SECRET_KEY = "syncstore-embedded-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env("DJANGO_SECRET_KEY", default="") or EMBEDDED_SECRET_KEY
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The admin with the operations console's site (dashboard, reports) as admin.site.
    "console.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_structlog",
    "csp",
    "axes",
    "core",
    "inventory",
    "erp_mapping",
    "channels_sync",
    "orders",
    "webhooks",
    "import_export",
    "console",
]

MIDDLEWARE = [
    "core.metrics.RequestMetricsMiddleware",
    "core.correlation.CorrelationIdMiddleware",
    "django_structlog.middlewares.RequestMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.actor.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.request_input.RequestInputMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out user before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'syncstore.sqlite3'}")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Server-side binding sends parameters apart from the SQL text (PostgreSQL reads typed
    # values, no quoting on the client). With a prepare threshold psycopg also prepares the
    # statements a connection repeats that often, so PostgreSQL stops parsing and planning
    # them; leave it empty behind a transaction-mode pooler (PgBouncer), which cannot keep
    # prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = env.bool(
        "DATABASE_SERVER_SIDE_BINDING", default=True
    )
    _prepare = env("DATABASE_PREPARE_THRESHOLD", default="5")
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = int(_prepare) if _prepare else None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: one writer at a time, so wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Take the write lock when a transaction starts, so a transaction that reads before it
    # writes waits for the lock (up to the timeout) instead of failing on the upgrade.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# Static files are served by the app itself (WhiteNoise). With DJANGO_STATIC_MANIFEST (the
# Docker image) they are compressed and cache-busted, which needs `collectstatic`; without
# it they are served straight from the apps.
STATIC_MANIFEST = env.bool("DJANGO_STATIC_MANIFEST", default=False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# --- HTTPS and browser security headers --------------------------------------------------------

# Behind a TLS-terminating proxy, the header (as `HEADER=value`) that marks a request as HTTPS.
# The proxy must set or strip it on every request; empty: only a direct TLS connection counts.
_PROXY_SSL_HEADER = env("DJANGO_SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO=https")
SECURE_PROXY_SSL_HEADER = tuple(_PROXY_SSL_HEADER.split("=", 1)) if _PROXY_SSL_HEADER else None
# The embedded set-up (SQLite, no HTTPS) is a local demo: no HSTS by default there.
EMBEDDED = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Strict-Transport-Security, sent on HTTPS responses only: browsers then refuse plain HTTP to
# this host for that long. On by default in production (a year).
SECURE_HSTS_SECONDS = env.int(
    "DJANGO_HSTS_SECONDS", default=0 if DEBUG or EMBEDDED else 365 * 24 * 3600
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
# Redirect plain HTTP to HTTPS (off by default: health probes often speak plain HTTP).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
# Content-Security-Policy (django-csp): only this origin's scripts, and inline ones only with
# the per-request nonce (the Swagger UI page carries it); no plugins, framing or foreign forms.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Admin login throttling (django-axes) -----------------------------------------------------

# Failed admin logins are counted per user name and client address (in the database); after
# AXES_FAILURE_LIMIT of them that user is locked out at that address, other users and
# addresses are not. The lock lapses after the cool-off, or `manage.py axes_reset` lifts it.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
_AXES_COOLOFF_MINUTES = env.float("AXES_COOLOFF_MINUTES", default=30)
# 0 minutes: locked until reset by hand.
AXES_COOLOFF_TIME = timedelta(minutes=_AXES_COOLOFF_MINUTES) if _AXES_COOLOFF_MINUTES else None
AXES_RESET_ON_SUCCESS = True
# No start-up banner in every command's output; failures and lockouts are still logged.
AXES_VERBOSE = False
# The client address is REMOTE_ADDR unless a proxy that sets a header is trusted: behind one,
# name its header (e.g. HTTP_X_FORWARDED_FOR) and the number of proxies, or every login
# shares the proxy's address. Never name a header clients can set themselves.
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list("AXES_CLIENT_IP_HEADERS", default=["REMOTE_ADDR"])
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=None)

# --- Cache (rate limits, alert suppression, throttles) -----------------------------------

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "core.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="syncstore"),
            # An unreachable Redis costs each request at most this long per cache call
            # before it goes on without the cache (redis-py waits 5 s by default).
            "OPTIONS": {
                "socket_connect_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=2.0),
                "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=2.0),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "syncstore",
        }
    }

# --- Celery ---------------------------------------------------------------------------------

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
# No broker configured: tasks run inline (the embedded default, used by `make demo`).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One queue per concern, so a bulk push never delays an order; `runall` consumes them all.
QUEUE_NAMES = ("default", "erp", "push", "webhooks", "orders")
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # The agent health check must not wait behind a long nightly pull on the erp queue.
    "erp_mapping.check_agents": {"queue": "default"},
    # Orders to the ERP ride the orders queue, never behind a nightly pull.
    "erp_mapping.erp_sync_send": {"queue": "orders"},
    "erp_mapping.erp_sync_sweep": {"queue": "orders"},
    "erp_mapping.*": {"queue": "erp"},
    # A reconciliation reads a whole channel back: never in front of the pushes.
    "channels_sync.reconcile_channels": {"queue": "default"},
    "channels_sync.reconcile_channel": {"queue": "default"},
    "channels_sync.*": {"queue": "push"},
    # Polls (long: list and fetch a channel's orders) wait on the orders queue, never in
    # front of the notifications the webhooks queue processes.
    "webhooks.poll_orders": {"queue": "orders"},
    "webhooks.poll_channel": {"queue": "orders"},
    "webhooks.*": {"queue": "webhooks"},
    "orders.*": {"queue": "orders"},
}
# A push run past its soft limit stops (its lock is given back, the rest is queued again);
# past the hard limit its process is killed and the run lock lapses by itself within
# CHANNEL_PUSH_LOCK_SECONDS. Both stay under the broker's visibility timeout, or a running
# push would be handed to a second worker. A task message carries the limits of the process
# that queued it: set them alike for the web, the workers and beat.
CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS = env.int("CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS", default=600)
CHANNEL_PUSH_TIME_LIMIT_SECONDS = env.int("CHANNEL_PUSH_TIME_LIMIT_SECONDS", default=660)
# Per-task options such as time limits; each concern's section below adds its own tasks.
CELERY_TASK_ANNOTATIONS: dict[str, dict] = {
    "channels_sync.push_channel": {
        "soft_time_limit": CHANNEL_PUSH_SOFT_TIME_LIMIT_SECONDS,
        "time_limit": CHANNEL_PUSH_TIME_LIMIT_SECONDS,
    },
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep the JSON handler in workers

# --- REST API -------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["core.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["core.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["core.auth.ApiKeyThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["core.filters.FilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumberPagination",
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "SyncStore API",
    "DESCRIPTION": (
        "Stock levels, the movement ledger, reservations and stock mutations. Authenticate "
        "with `Authorization: Api-Key <key>` or `X-API-Key: <key>`. Every error is "
        '`{"code", "message", "details", "correlation_id"}`; state-changing POSTs accept an '
        "`Idempotency-Key` header (Stripe semantics)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "MutationTypeEnum": "inventory.serializers.MUTATION_TYPES",
        "WarehouseTypeEnum": "inventory.models.Warehouse.Type",
        "SyncRunStatusEnum": "erp_mapping.models.SyncRun.Status",
        "SyncRunTriggerEnum": "erp_mapping.models.SyncRun.Trigger",
        "ErpAgentStatusEnum": "erp_mapping.models.ErpAgent.Status",
        "ErpSyncJobStatusEnum": "erp_mapping.models.ErpSyncJob.Status",
        "ErpSyncJobOperationEnum": "erp_mapping.models.ErpSyncJob.Operation",
        "ErpCallbackStatusEnum": "erp_mapping.serializers.sync.CALLBACK_STATUSES",
        "ErpMappingTypeEnum": "erp_mapping.models.ErpCodeMapping.Type",
        "ChannelTypeEnum": "channels_sync.models.ChannelType",
        "ChannelListingStatusEnum": "channels_sync.models.ChannelListing.Status",
        "AllocationRuleScopeEnum": "channels_sync.models.AllocationRule.Scope",
        "AllocationRuleStrategyEnum": "channels_sync.models.AllocationRule.Strategy",
        "PushAttemptOutcomeEnum": "channels_sync.models.PushAttempt.Outcome",
        "ConflictKindEnum": "channels_sync.models.Conflict.Kind",
        "ConflictStatusEnum": "channels_sync.models.Conflict.Status",
        "ConflictSourceEnum": "channels_sync.models.Conflict.Source",
        "ConflictStrategyEnum": "channels_sync.models.ConflictStrategy",
        "ConflictEventActionEnum": "channels_sync.models.ConflictEvent.Action",
        "ConflictPolicyEnum": "channels_sync.models.ConflictPolicy",
        "OrderStatusEnum": "orders.models.Order.Status",
        "OrderLineStatusEnum": "orders.models.OrderLine.Status",
        "OrderEventKindEnum": "orders.models.OrderEvent.Kind",
        "OrderEventSourceEnum": "orders.models.OrderEvent.Source",
    },
}

# Request limits. The largest documented bodies (a 5,000-row agent batch, a 10,000-row
# mapping seed) are about 3 MB, under 6 MB with every text at its maximum length; a larger
# body answers 413 `payload_too_large`. Django's own default (2.5 MB) is too small for them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("REQUEST_MAX_BODY_BYTES", default=16 * 1024 * 1024)
# Query parameters (or form fields) one request may carry; more answer 400 `too_many_fields`.
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("REQUEST_MAX_FIELDS", default=1000)

API_KEY_RATE_LIMIT_PER_MINUTE = env.int("API_KEY_RATE_LIMIT_PER_MINUTE", default=100)
IDEMPOTENCY_KEY_TTL_SECONDS = env.int("IDEMPOTENCY_KEY_TTL_SECONDS", default=24 * 3600)
# A request that holds a key longer than this is taken to have died; its key can be reused.
IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = env.int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", default=300)

# --- Security of stored secrets ---------------------------------------------------------------

# Base64 AES-256 keys, comma separated: the first encrypts, all decrypt. The embedded key
# is for the SQLite demo only (flagged by the `core.W002` check when DEBUG is off); set but
# empty means unset. Keys that cannot be used stop start-up (the `core.E002` check).
EMBEDDED_FIELD_ENCRYPTION_KEY = "c3luY3N0b3JlLWVtYmVkZGVkLWRldmVsb3BtZW50LWs="
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[]) or [
    EMBEDDED_FIELD_ENCRYPTION_KEY
]

# --- Outside systems --------------------------------------------------------------------------

OUTBOUND_HTTP_TIMEOUT_SECONDS = env.float("OUTBOUND_HTTP_TIMEOUT_SECONDS", default=10.0)
# The URL is the credential: marked secret so that no log line shows it.
SLACK_WEBHOOK_URL = SecretStr(env("SLACK_WEBHOOK_URL", default=""))
ALERT_SUPPRESSION_SECONDS = env.int("ALERT_SUPPRESSION_SECONDS", default=3600)
# First retry delay of a failed Slack post; later ones double, with jitter.
ALERT_RETRY_BACKOFF_SECONDS = env.float("ALERT_RETRY_BACKOFF_SECONDS", default=5.0)

# --- Inventory --------------------------------------------------------------------------------

RESERVATION_DEFAULT_TTL_SECONDS = env.int("RESERVATION_DEFAULT_TTL_SECONDS", default=30 * 60)
RESERVATION_MAX_TTL_SECONDS = env.int("RESERVATION_MAX_TTL_SECONDS", default=30 * 24 * 3600)

# --- ERP ----------------------------------------------------------------------------------------

# The default vendor's ERP REST API (other vendors' connections are set in the admin or API).
ERP_BASE_URL = env("ERP_BASE_URL", default="")
ERP_API_TOKEN = SecretStr(env("ERP_API_TOKEN", default=""))
# Waits before the 2nd, 3rd and 4th attempt of a pull (seconds).
ERP_PULL_RETRY_DELAYS = [
    float(d) for d in env.list("ERP_PULL_RETRY_DELAYS", default=["5", "15", "45"])
]
ERP_PULL_HTTP_TIMEOUT_SECONDS = env.float("ERP_PULL_HTTP_TIMEOUT_SECONDS", default=120.0)
# A `running` pull older than this is taken to have died: it is marked failed and its lock
# taken over. The pull task's hard time limit is the same, so no live pull is ever taken over
# and a pull killed at its limit never blocks the next one; at its soft limit (a margin
# earlier) the pull stops itself, records its run as failed and gives the lock back.
ERP_PULL_RUN_TIMEOUT_MINUTES = env.int("ERP_PULL_RUN_TIMEOUT_MINUTES", default=30)
ERP_PULL_TIME_LIMIT_SECONDS = ERP_PULL_RUN_TIMEOUT_MINUTES * 60
ERP_PULL_SOFT_TIME_LIMIT_SECONDS = ERP_PULL_TIME_LIMIT_SECONDS - env.int(
    "ERP_PULL_SOFT_TIME_LIMIT_MARGIN_SECONDS", default=60
)
CELERY_TASK_ANNOTATIONS["erp_mapping.pull_vendor"] = {
    "soft_time_limit": ERP_PULL_SOFT_TIME_LIMIT_SECONDS,
    "time_limit": ERP_PULL_TIME_LIMIT_SECONDS,
}
ERP_PULL_CREATE_UNKNOWN = env.bool("ERP_PULL_CREATE_UNKNOWN", default=False)
ERP_PULL_ALERT_CHANGES = env.int("ERP_PULL_ALERT_CHANGES", default=10_000)
ERP_PULL_ALERT_SLOW_SECONDS = env.int("ERP_PULL_ALERT_SLOW_SECONDS", default=15 * 60)
# Raw pull payloads: a local folder, or S3 (django-storages) when a bucket is named.
# A relative folder is taken from the project directory.
ERP_ARCHIVE_DIR = str(BASE_DIR / env("ERP_ARCHIVE_DIR", default="var/erp-archive"))
ERP_ARCHIVE_S3_BUCKET = env("ERP_ARCHIVE_S3_BUCKET", default="")
ERP_ARCHIVE_RETENTION_DAYS = env.int("ERP_ARCHIVE_RETENTION_DAYS", default=30)
if ERP_ARCHIVE_S3_BUCKET:
    STORAGES["erp_archive"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ERP_ARCHIVE_S3_BUCKET,
            "region_name": env("ERP_ARCHIVE_S3_REGION", default=None),
            "endpoint_url": env("ERP_ARCHIVE_S3_ENDPOINT_URL", default=None),
            "default_acl": None,
            "file_overwrite": False,
        },
    }
else:
    STORAGES["erp_archive"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": ERP_ARCHIVE_DIR},
    }
# Agents: no heartbeat for this long marks an agent degraded, then offline (with an alert).
ERP_AGENT_DEGRADED_AFTER_SECONDS = env.int("ERP_AGENT_DEGRADED_AFTER_SECONDS", default=120)
ERP_AGENT_OFFLINE_AFTER_SECONDS = env.int("ERP_AGENT_OFFLINE_AFTER_SECONDS", default=600)
ERP_INGEST_MAX_ROWS = env.int("ERP_INGEST_MAX_ROWS", default=5000)

# --- Observability ----------------------------------------------------------------------------

METRICS_BEARER_TOKEN = env("METRICS_BEARER_TOKEN", default="")
LOG_LEVEL = env("DJANGO_LOG_LEVEL", default="INFO")
LOGGING = build_logging_config(LOG_LEVEL)
configure_structlog()
DJANGO_STRUCTLOG_IP_LOGGING_ENABLED = True
# One line per request (`request_finished` carries everything); the start line is DEBUG.
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG
DJANGO_STRUCTLOG_CELERY_ENABLED = False  # core.correlation carries the ids through Celery

# --- Channels (marketplace pushes) ----------------------------------------------------------------

# A listing whose push fails with a retryable error this many times in a row is dead-lettered.
CHANNEL_PUSH_MAX_ATTEMPTS = env.int("CHANNEL_PUSH_MAX_ATTEMPTS", default=8)
# Backoff after the n-th failure: up to base * 2**(n-1) seconds (full jitter), at most the cap.
CHANNEL_PUSH_RETRY_BASE_SECONDS = env.float("CHANNEL_PUSH_RETRY_BASE_SECONDS", default=5.0)
CHANNEL_PUSH_RETRY_CAP_SECONDS = env.float("CHANNEL_PUSH_RETRY_CAP_SECONDS", default=900.0)
# A throttle answer without Retry-After waits this long before the batch is sent again.
CHANNEL_THROTTLE_WAIT_SECONDS = env.float("CHANNEL_THROTTLE_WAIT_SECONDS", default=1.0)
# How long one push run may wait on throttles in place before it requeues itself instead.
CHANNEL_PUSH_INLINE_WAIT_SECONDS = env.float("CHANNEL_PUSH_INLINE_WAIT_SECONDS", default=30.0)
# Retryable failures in a row after which a push run stops and backs off the rest.
CHANNEL_PUSH_FAILURE_STREAK = env.int("CHANNEL_PUSH_FAILURE_STREAK", default=3)
# A channel's push run lock lives this long unless its run renews it (a heartbeat renews it
# every third of this while the run is alive): a killed worker's lock lapses this soon.
CHANNEL_PUSH_LOCK_SECONDS = env.int("CHANNEL_PUSH_LOCK_SECONDS", default=45)
# Dirty listings planned per database round (memory stays flat on big channels).
CHANNEL_PUSH_PAGE_SIZE = env.int("CHANNEL_PUSH_PAGE_SIZE", default=5000)
CHANNEL_HTTP_TIMEOUT_SECONDS = env.float("CHANNEL_HTTP_TIMEOUT_SECONDS", default=15.0)

# --- orders and inbound webhooks ---
# Where marketplaces reach this deployment: a channel's webhook URL is this base plus
# /webhooks/<type>/<id>/, the URL to register with the marketplace (and the one Shopee signs).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Orders are also polled (webhooks get lost): every channel this often, looking back over
# the previous cursor by the overlap; a channel never polled looks back the first lookback.
ORDERS_POLL_INTERVAL_SECONDS = env.int("ORDERS_POLL_INTERVAL_SECONDS", default=300)
ORDERS_POLL_OVERLAP_SECONDS = env.int("ORDERS_POLL_OVERLAP_SECONDS", default=600)
ORDERS_POLL_FIRST_LOOKBACK_SECONDS = env.int(
    "ORDERS_POLL_FIRST_LOOKBACK_SECONDS", default=3 * 24 * 3600
)
# Processed webhook events are kept this long, then purged.
WEBHOOK_EVENT_RETENTION_DAYS = env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=30)
# Order details are fetched this many orders per call while polling.
ORDERS_POLL_FETCH_BATCH = env.int("ORDERS_POLL_FETCH_BATCH", default=50)
# The intake keeps a channel (and its signing secret) in process memory this long; a
# signature that fails against the kept copy is checked again against the database.
WEBHOOK_CHANNEL_CACHE_SECONDS = env.float("WEBHOOK_CHANNEL_CACHE_SECONDS", default=5.0)
# Badly signed webhooks: the channel is read again (a rotated secret) and its failure count
# written to its row at most once this often per channel (counted in the cache meanwhile).
WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS = env.float(
    "WEBHOOK_SIGNATURE_FAILURE_EVERY_SECONDS", default=5.0
)
# Processing an event: retries with backoff (base seconds, doubling), then failed and
# dead-lettered; a worker holds an event this long (past the task's hard time limit).
WEBHOOK_PROCESS_MAX_RETRIES = env.int("WEBHOOK_PROCESS_MAX_RETRIES", default=6)
WEBHOOK_PROCESS_RETRY_BACKOFF_SECONDS = env.float(
    "WEBHOOK_PROCESS_RETRY_BACKOFF_SECONDS", default=10.0
)
WEBHOOK_PROCESS_SOFT_TIME_LIMIT_SECONDS = env.int(
    "WEBHOOK_PROCESS_SOFT_TIME_LIMIT_SECONDS", default=120
)
WEBHOOK_PROCESS_TIME_LIMIT_SECONDS = WEBHOOK_PROCESS_SOFT_TIME_LIMIT_SECONDS + 30
WEBHOOK_PROCESS_LEASE_SECONDS = WEBHOOK_PROCESS_TIME_LIMIT_SECONDS + 60
# The sweep re-queues events left `received` longer than this (a crash before the enqueue).
WEBHOOK_SWEEP_GRACE_SECONDS = env.int("WEBHOOK_SWEEP_GRACE_SECONDS", default=120)
ORDERS_POLL_SOFT_TIME_LIMIT_SECONDS = env.int("ORDERS_POLL_SOFT_TIME_LIMIT_SECONDS", default=600)
CELERY_TASK_ANNOTATIONS["webhooks.process_event"] = {
    "soft_time_limit": WEBHOOK_PROCESS_SOFT_TIME_LIMIT_SECONDS,
    "time_limit": WEBHOOK_PROCESS_TIME_LIMIT_SECONDS,
}
CELERY_TASK_ANNOTATIONS["webhooks.poll_channel"] = {
    "soft_time_limit": ORDERS_POLL_SOFT_TIME_LIMIT_SECONDS,
    "time_limit": ORDERS_POLL_SOFT_TIME_LIMIT_SECONDS + 60,
}

# --- orders to the ERP ---
# A confirmed order's job is sent to the vendor's agent; a failed send is retried with
# exponential backoff and jitter (base seconds, doubling, capped) up to the last attempt,
# then the job is dead and dead-lettered.
ERP_SYNC_MAX_ATTEMPTS = env.int("ERP_SYNC_MAX_ATTEMPTS", default=8)
ERP_SYNC_RETRY_BASE_SECONDS = env.float("ERP_SYNC_RETRY_BASE_SECONDS", default=30.0)
ERP_SYNC_RETRY_MAX_SECONDS = env.float("ERP_SYNC_RETRY_MAX_SECONDS", default=3600.0)
# One call to an agent may take this long (seconds).
ERP_AGENT_HTTP_TIMEOUT_SECONDS = env.float("ERP_AGENT_HTTP_TIMEOUT_SECONDS", default=15.0)
# A job the agent took (202) and never called back about is sent again after this (seconds).
ERP_CALLBACK_TIMEOUT = env.int("ERP_CALLBACK_TIMEOUT", default=900)
# The agents' callbacks (one per order they accepted) count in a window of their own.
ERP_AGENT_CALLBACK_RATE_PER_MINUTE = env.int("ERP_AGENT_CALLBACK_RATE_PER_MINUTE", default=1200)
# A job `processing` longer than this (seconds) lost its worker: the sweep queues it again.
ERP_SYNC_STUCK_SECONDS = env.int("ERP_SYNC_STUCK_SECONDS", default=300)
ERP_SYNC_SWEEP_INTERVAL_SECONDS = env.int("ERP_SYNC_SWEEP_INTERVAL_SECONDS", default=60)
# The circuit breaker per vendor: this many failures in a row open it; after the reset
# timeout one trial call is let through (half-open), and its success closes it.
ERP_BREAKER_FAIL_MAX = env.int("ERP_BREAKER_FAIL_MAX", default=5)
ERP_BREAKER_RESET_SECONDS = env.int("ERP_BREAKER_RESET_SECONDS", default=60)

# --- reconciliation ---
# ERP side: every vendor with an online agent, this often; the SKU space is first cut into
# this many ranges, and a differing range with at most the leaf rows is fetched whole.
ERP_RECONCILE_INTERVAL_SECONDS = env.int("ERP_RECONCILE_INTERVAL_SECONDS", default=3600)
ERP_RECONCILE_RANGES = env.int("ERP_RECONCILE_RANGES", default=64)
ERP_RECONCILE_LEAF_ROWS = env.int("ERP_RECONCILE_LEAF_ROWS", default=64)
# A vendor's reconciliation task is stopped after this (seconds; a minute earlier it records
# itself failed, `time_limit`), and an event left running longer is marked timed out.
ERP_RECONCILE_TIME_LIMIT_SECONDS = env.int("ERP_RECONCILE_TIME_LIMIT_SECONDS", default=1800)
CELERY_TASK_ANNOTATIONS["erp_mapping.reconcile_vendor"] = {
    "soft_time_limit": max(1, ERP_RECONCILE_TIME_LIMIT_SECONDS - 60),
    "time_limit": ERP_RECONCILE_TIME_LIMIT_SECONDS,
}
# Channel side: every channel's listings are read back this often, this many per call.
CHANNEL_RECONCILE_INTERVAL_SECONDS = env.int("CHANNEL_RECONCILE_INTERVAL_SECONDS", default=4 * 3600)
CHANNEL_RECONCILE_BATCH = env.int("CHANNEL_RECONCILE_BATCH", default=50)
# A listing whose stock differs from ours is read again this many seconds after the first
# read before a conflict opens: a sale not yet applied here has time to arrive meanwhile.
CHANNEL_RECONCILE_SETTLE_SECONDS = env.float("CHANNEL_RECONCILE_SETTLE_SECONDS", default=30.0)
# A run waits at most this long in all on throttled reads, then stops (`throttled`): the rest
# is read by the next run.
CHANNEL_RECONCILE_THROTTLE_BUDGET_SECONDS = env.float(
    "CHANNEL_RECONCILE_THROTTLE_BUDGET_SECONDS", default=600.0
)
# A run past its soft limit stops with what it read (its lock given back); past the hard limit
# its process is killed (the lock lapses by itself). Both under the broker's visibility timeout.
CHANNEL_RECONCILE_SOFT_TIME_LIMIT_SECONDS = env.int(
    "CHANNEL_RECONCILE_SOFT_TIME_LIMIT_SECONDS", default=1800
)
CELERY_TASK_ANNOTATIONS["channels_sync.reconcile_channel"] = {
    "soft_time_limit": CHANNEL_RECONCILE_SOFT_TIME_LIMIT_SECONDS,
    "time_limit": CHANNEL_RECONCILE_SOFT_TIME_LIMIT_SECONDS + 60,
}
# Outside the tests and the demo, channels talk to the real marketplaces; these are the
# defaults offered when a channel names no base URL.
CHANNEL_DEFAULT_BASE_URLS = {
    "shopee": env("SHOPEE_BASE_URL", default="https://partner.shopeemobile.com"),
    "lazada": env("LAZADA_BASE_URL", default="https://api.lazada.co.id/rest"),
    "tiktok": env("TIKTOK_BASE_URL", default="https://open-api.tiktokglobalshop.com"),
    "tokopedia": env("TOKOPEDIA_BASE_URL", default="https://open-api.tiktokglobalshop.com"),
    # eBay's OAuth token endpoint is on the same host: a channel with no auth base URL uses
    # its base URL for tokens too.
    "ebay": env("EBAY_BASE_URL", default="https://api.ebay.com"),
    "square": env("SQUARE_BASE_URL", default="https://connect.squareup.com"),
    # Blank: each Shopify channel talks to its own shop, https://{shop_domain}.
    "shopify": env("SHOPIFY_BASE_URL", default=""),
    # The North America SP-API host; a channel's `endpoint` credential names another region's.
    "amazon": env("AMAZON_BASE_URL", default="https://sellingpartnerapi-na.amazon.com"),
}
# How long eBay's notification public keys are kept in the cache, by key id (seconds). A key
# fetch costs an application token and a Notification API call (10,000 a day per app).
EBAY_PUBLIC_KEY_CACHE_SECONDS = env.int("EBAY_PUBLIC_KEY_CACHE_SECONDS", default=3600)
# The `Square-Version` every Square call sends: the API version its request and answer
# shapes are read in (https://developer.squareup.com/docs/build-basics/versioning-overview).
SQUARE_API_VERSION = env("SQUARE_API_VERSION", default="2025-10-16")
# The Shopify Admin API version a channel calls unless its credentials name one
# (`api_version`); 2026-01 brings `changeFromQuantity` (compare-and-set) and `@idempotent`.
SHOPIFY_API_VERSION = env("SHOPIFY_API_VERSION", default="2026-01")
# Amazon: where Login with Amazon refreshes tokens (`{base}/auth/o2/token`) when a channel
# names no auth base URL.
AMAZON_AUTH_BASE_URL = env("AMAZON_AUTH_BASE_URL", default="https://api.amazon.com")
# A push of more listings than this goes as one JSON_LISTINGS_FEED instead of one
# patchListingsItem call per SKU.
AMAZON_FEED_THRESHOLD = env.int("AMAZON_FEED_THRESHOLD", default=20)
# A submitted feed is asked for its processing status this often (seconds), for at most the
# max wait (never more than CHANNEL_PUSH_INLINE_WAIT_SECONDS); a feed still queued or running
# then is left to Amazon and remembered, and the seller's pushes wait (throttled, asking
# again every poll interval) until it ends.
AMAZON_FEED_POLL_SECONDS = env.float("AMAZON_FEED_POLL_SECONDS", default=5.0)
AMAZON_FEED_MAX_WAIT_SECONDS = env.float("AMAZON_FEED_MAX_WAIT_SECONDS", default=20.0)
# patchListingsItem's burst (Amazon lowered it from 10 to 5 on 2024-12-18; its rate is 5/s).
AMAZON_PATCH_BURST = env.int("AMAZON_PATCH_BURST", default=5)
