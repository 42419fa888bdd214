"""Payera settings: everything lives here with embedded-mode defaults; env vars switch.

Embedded default (nothing but Python): SQLite in WAL mode with IMMEDIATE transactions, a
filesystem Celery transport, a database cache, the local secrets backend.
Served setup: DATABASE_URL=postgres://..., REDIS_URL=redis://..., SECRETS_BACKEND=vault.
DJANGO_ENV=production turns on the deploy hardening and refuses unsafe configuration.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from payera.env import BASE_DIR, DEFAULT_SECRET_KEY, env

DJANGO_ENV = env("DJANGO_ENV")
PRODUCTION = DJANGO_ENV == "production"

SECRET_KEY = env("SECRET_KEY")
DEBUG = env("DEBUG")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

VAR_DIR = Path(env.str("PAYERA_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_fsm",
    "guardian",
    "auditlog",
    # platform
    "payera.core",
    "payera.merchants",
    "payera.audit",
    "payera.secrets",
    "payera.events",
    # domain
    "ledger",
    "psp_adapters",
    "payments",
    "reconciliation",
]

MIDDLEWARE = [
    "payera.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
]

ROOT_URLCONF = "payera.urls"
WSGI_APPLICATION = "payera.wsgi.application"
ASGI_APPLICATION = "payera.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "payera" / "templates"],
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

# --- Database ---------------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN, so
    # concurrent writers serialize instead of failing on lock upgrade (docs/decisions/0002).
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
DATABASE_VENDOR = "sqlite" if _db["ENGINE"].endswith("sqlite3") else "postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, broker, tasks ---------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="payera"),
        }
    }
else:
    # Shared by the web, worker and scheduler processes of the embedded default.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = env("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "data_folder_processed": str(_queue_dir / "processed"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env("CELERY_TASK_ALWAYS_EAGER")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {}

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "payera.core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Payera API",
    "DESCRIPTION": "Payments, refunds, balances and webhooks. Amounts are integers in minor units.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/v1",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Domain configuration ---------------------------------------------------------------
SECRETS_BACKEND = env("SECRETS_BACKEND")
SANDBOX_ALPHA_URL = env("SANDBOX_ALPHA_URL")
SANDBOX_BETA_URL = env("SANDBOX_BETA_URL")
SANDBOX_DATA_DIR = env("SANDBOX_DATA_DIR")
WEBHOOK_ALLOW_PRIVATE_URLS = env("WEBHOOK_ALLOW_PRIVATE_URLS") and not PRODUCTION

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "payera.core.logging.RequestIdFilter"},
        "mask": {"()": "payera.core.logging.MaskingFilter"},
    },
    "formatters": {
        "json": {"()": "payera.core.logging.MaskingJsonFormatter"},
        "plain": {
            "()": "payera.core.logging.MaskingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "mask"],
            "formatter": "json" if env("LOG_JSON") else "plain",
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "django.db.backends": {"level": "WARNING", "propagate": True},
        "celery": {"level": LOG_LEVEL, "propagate": True},
    },
}

# --- Production hardening ---------------------------------------------------------------
if PRODUCTION:
    problems = []
    if DEBUG:
        problems.append("DEBUG must be off")
    if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY must be set to a random value of 50+ characters")
    if not ALLOWED_HOSTS or any(h == "*" or h.startswith("*") for h in ALLOWED_HOSTS):
        problems.append("ALLOWED_HOSTS must list the real host names (no wildcard)")
    if problems:
        raise ImproperlyConfigured("Refusing to start in production: " + "; ".join(problems))
    SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_AGE = 15 * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- PSP connectors ---------------------------------------------------------------------
# name -> adapter class (dotted path) and options. Credentials never live here: the registry
# reads them from the secrets backend at `psp/<name>`.
PSP_CONNECTORS = {
    "alpha": {"ADAPTER": "psp_adapters.alpha.AlphaAdapter", "OPTIONS": {"base_url": SANDBOX_ALPHA_URL}},
    "beta": {"ADAPTER": "psp_adapters.beta.BetaAdapter", "OPTIONS": {"base_url": SANDBOX_BETA_URL}},
}

# --- Ledger (ledger app) ----------------------------------------------------------------
# Sub-accounts per hot account (docs/decisions/ledger-hot-accounts.md); the posting engine
# ("auto": the PL/pgSQL function on PostgreSQL, the portable Python engine on SQLite).
LEDGER_HOT_SHARDS = env.int("LEDGER_HOT_SHARDS", default=16)
LEDGER_ENGINE = env.str("LEDGER_ENGINE", default="auto")
CELERY_BEAT_SCHEDULE["ledger-pending-expire"] = {"task": "ledger.tasks.pending_expire_task", "schedule": 60.0}
