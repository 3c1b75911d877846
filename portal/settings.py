"""Settings for the portal, read from the environment (12-factor).

With nothing set, the embedded defaults work on a bare machine: SQLite, Celery on kombu's
filesystem transport, a secret key generated once into a git-ignored file under var/.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL, SECRET_KEY, ALLOWED_HOSTS, SIP_NODES and
SIP_CONTROL_SECRET.
"""

import os
import tempfile
from pathlib import Path

import environ

from portal.local_state import local_secret, state_dir

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = state_dir(env.str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or local_secret(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "accounts",
    "billing",
    "sipsync",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process and the Celery worker read while the other writes. IMMEDIATE
    # transactions take the write lock when they begin, so two processes writing at once wait
    # for each other (the timeout) instead of one failing with "database is locked" when its
    # read lock cannot be upgraded.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Tests use a file, not memory, so that a Celery worker process can share the test
    # database (the end-to-end sync test); one file per test process.
    DATABASES["default"]["TEST"] = {
        "NAME": env.str("PORTAL_TEST_DB_FILE", default="")
        or str(Path(tempfile.gettempdir()) / f"portal-test-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = state_dir(str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

MAILERS = {
    "default": {"BACKEND": env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")}
}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")

# --- Redis, Celery --------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
BROKER_DIR = VAR_DIR / "broker"

if REDIS_URL:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Embedded broker: kombu's filesystem transport needs no server, only a shared folder.
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem://"):
        # kombu's transport with an atomic publish and take, polled every 50 ms (portal/broker.py).
        CELERY_BROKER_TRANSPORT = "portal.broker:Transport"
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    # Provisioning sync (sipsync/tasks.py). "expires" keeps a stopped worker from facing a pile.
    "sipsync-sweep-outbox": {"task": "sipsync.sweep_outbox", "schedule": 30.0, "options": {"expires": 25}},
    "sipsync-reconcile": {"task": "sipsync.reconcile", "schedule": 300.0, "options": {"expires": 240}},
    "sipsync-collect-events": {
        "task": "sipsync.collect_events",
        "schedule": 15.0,
        "options": {"expires": 12},
    },
    # Credit reserved by calls in progress, for available credit in the portal and the API.
    "sipsync-collect-credit": {"task": "sipsync.collect_credit", "schedule": 10.0, "options": {"expires": 8}},
    "sipsync-collect-records": {
        "task": "sipsync.collect_records",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    "billing-rate-pending": {"task": "billing.rate_pending", "schedule": 300.0, "options": {"expires": 240}},
}
# The default queue, which every worker command (runall, docker-compose) consumes.
CELERY_TASK_ROUTES = {"sipsync.*": {"queue": "celery"}}

# --- SIP service ----------------------------------------------------------------------------
SIP_REALM = env.str("SIP_REALM", default="sip.ninja.local")
# Public address customers type into their phones (shown in the device settings panel).
SIP_PUBLIC_HOST = env.str("SIP_PUBLIC_HOST", default="127.0.0.1")
SIP_PUBLIC_PORT = env.int("SIP_PUBLIC_PORT", default=5060)
# Upstream carrier for calls to public numbers, e.g. "sip:carrier.example.net:5060" (unset: refused).
SIP_TRUNK = env.str("SIP_TRUNK", default="")
# Control interfaces of every SIP service node, e.g. "http://10.0.0.5:5080,http://10.0.0.6:5080".
SIP_NODES = env.list("SIP_NODES", default=["http://127.0.0.1:5080"])
SIP_CONTROL_SECRET = env.str("SIP_CONTROL_SECRET", default="") or local_secret(VAR_DIR / "sip_control_secret")

# --- REST framework -------------------------------------------------------------------------
# The API (/api/v1/): API keys (Bearer) or the browser's session (with CSRF); one error shape;
# limit/offset pages; a request budget per key (429 with Retry-After). See portal/api.py.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.IsTenant"],
    "DEFAULT_THROTTLE_CLASSES": ["portal.api.PerKeyThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": env.str("API_THROTTLE_RATE", default="1200/min")},
    "DEFAULT_PAGINATION_CLASS": "portal.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "portal.api.ApiAutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ninja PBX API",
    "DESCRIPTION": (
        "Customers, SIP accounts, caller IDs, credit and diagnostics. Authenticate with an API key "
        "(`Authorization: Bearer <key>`) or the portal's session. Errors are always "
        '`{"error": {"code", "message", "fields"}}`. Lists take `limit` (default 50, at most 500) '
        "and `offset`. Updates accept `If-Match` with the ETag of a read (412 if it changed)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The UIs come from drf-spectacular-sidecar's static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api.add_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
