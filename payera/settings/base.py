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
    "drf_spectacular_sidecar",
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
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
    # A file, not :memory:, so threads and worker processes in tests share the test database.
    _db["TEST"] = {"NAME": str(Path(_db["NAME"]).with_name("test_" + Path(_db["NAME"]).name))}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db.setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
    # Parameters bound by the server and statements prepared once per connection, after
    # DB_PREPARE_THRESHOLD runs of the same statement (docs/decisions/server-side-binding.md):
    # PostgreSQL spent a third of its CPU per payment parsing and planning statements it had seen.
    # DB_PREPARE_THRESHOLD=off for a pooler that cannot keep prepared statements (PgBouncer in
    # transaction mode before 1.21, or without max_prepared_statements).
    _db["OPTIONS"].setdefault("server_side_binding", env.bool("DB_SERVER_SIDE_BINDING", default=True))
    _threshold = env.str("DB_PREPARE_THRESHOLD", default="5")
    _db["OPTIONS"].setdefault("prepare_threshold", None if _threshold == "off" else int(_threshold))
    # READ COMMITTED, whatever the server's, database's or role's default_transaction_isolation:
    # the code relies on it (select_for_update re-reads the committed row, INSERT ... ON CONFLICT
    # retries, the PSP webhook inbox's read of a repeat), and Django leaves the server's default in
    # force unless OPTIONS names a level (docs/decisions/read-committed.md). Not a setting: no other
    # level is supported.
    from psycopg import IsolationLevel

    _db["OPTIONS"]["isolation_level"] = IsolationLevel.READ_COMMITTED
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
        # kombu keeps its exchange table here; its default is ./control, relative to the cwd
        "control_folder": str(_queue_dir / "control"),
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
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

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
    # Swagger UI assets served by us (drf-spectacular-sidecar), not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Domain configuration ---------------------------------------------------------------
SECRETS_BACKEND = env("SECRETS_BACKEND")
SANDBOX_ALPHA_URL = env("SANDBOX_ALPHA_URL")
SANDBOX_BETA_URL = env("SANDBOX_BETA_URL")
SANDBOX_DATA_DIR = env("SANDBOX_DATA_DIR")
# `make run` (run_all) also supervises the processes these callables name: each returns
# {name: argv} for a Python interpreter. Named here so the platform imports no domain app.
RUN_ALL_EXTRA_PROCESSES = ["psp_adapters.sandbox.launcher.sandbox_commands"]
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
    if env("SECRETS_BACKEND") == "memory":
        problems.append("SECRETS_BACKEND=memory keeps keys in one process's memory; use vault (or local)")
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

# --- Merchants, API keys, rate limits, idempotency (issue 3) ----------------------------
INSTALLED_APPS += ["payera.idempotency"]
REST_FRAMEWORK.update(
    {
        # Deny by default: any API view needs a key unless it says otherwise (the schema and
        # docs views do); merchant endpoints subclass payera.merchants.api.base.MerchantApiView.
        "DEFAULT_AUTHENTICATION_CLASSES": ["payera.merchants.api.authentication.ApiKeyAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["payera.merchants.api.permissions.ApiKeyPermission"],
        "DEFAULT_THROTTLE_CLASSES": ["payera.merchants.api.throttling.ApiKeyRateThrottle"],
        # Per API key, on the cache (Redis when REDIS_URL is set): "<n>/<s|m|h|d>".
        "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_LIMIT", default="100/s")},
    }
)
# last_used_at is written at most once per this many seconds per key (not on every request).
API_KEY_LAST_USED_RESOLUTION = env.int("API_KEY_LAST_USED_RESOLUTION", default=60)
# Idempotency keys are kept (and honoured) this long, then pruned by the beat task.
IDEMPOTENCY_KEY_TTL = env.int("IDEMPOTENCY_KEY_TTL", default=24 * 3600)
# An in-flight claim older than this is taken to be a crashed request: a retry may take it over.
# Longer than any request can run (PSP timeouts and cascades included).
IDEMPOTENCY_LOCK_TIMEOUT = env.int("IDEMPOTENCY_LOCK_TIMEOUT", default=120)
CELERY_BEAT_SCHEDULE["idempotency-prune"] = {
    "task": "payera.idempotency.tasks.idempotency_prune_task",
    "schedule": 3600.0,
}
# The schema and docs UI are public: a stray Authorization header must not make them 401.
SPECTACULAR_SETTINGS["SERVE_AUTHENTICATION"] = []

# --- Events: outbox and merchant webhooks (payera.events; docs/webhooks.md) -------------
EVENTS_API_VERSION = "2026-11-01"
EVENTS_RETENTION_DAYS = env.int("EVENTS_RETENTION_DAYS", default=30)
# The relay sweep leaves events younger than this to the on-commit relay.
EVENTS_RELAY_SWEEP_MIN_AGE_SECONDS = env.float("EVENTS_RELAY_SWEEP_MIN_AGE_SECONDS", default=10.0)
# Committed events wake the relay by one Redis LPUSH the workers listen to (payera/events/wakeup.py)
# when the broker is Redis; off: one Celery message per transaction, as before.
EVENTS_RELAY_WAKEUP = env.bool("EVENTS_RELAY_WAKEUP", default=True)
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3.0)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Creating or updating an endpoint waits this long at most for its URL's host to resolve (the SSRF
# check, in the web thread): then 400 url_resolution_timeout, nothing stored.
WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS = env.float("WEBHOOK_URL_RESOLVE_TIMEOUT_SECONDS", default=5.0)
# Exponential backoff with jitter: base, base*2, base*4, ... capped, for the horizon, then dead letter.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=60.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=6 * 3600.0)
WEBHOOK_RETRY_HORIZON_SECONDS = env.float("WEBHOOK_RETRY_HORIZON_SECONDS", default=3 * 86400.0)
WEBHOOK_RETRY_JITTER = env.float("WEBHOOK_RETRY_JITTER", default=0.25)
# Retries due within this many seconds are queued with a countdown; later ones by the sweep.
WEBHOOK_COUNTDOWN_MAX_SECONDS = env.float("WEBHOOK_COUNTDOWN_MAX_SECONDS", default=120.0)
# At most this many attempts in flight per endpoint; a delivery finding no slot steps aside.
WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT = env.int("WEBHOOK_MAX_CONCURRENCY_PER_ENDPOINT", default=4)
WEBHOOK_CONCURRENCY_RETRY_SECONDS = env.float("WEBHOOK_CONCURRENCY_RETRY_SECONDS", default=2.0)
# An endpoint failing without a single success this long (and this many times) is disabled.
WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS = env.float("WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS", default=3 * 86400.0)
WEBHOOK_ENDPOINT_DISABLE_MIN_FAILURES = env.int("WEBHOOK_ENDPOINT_DISABLE_MIN_FAILURES", default=10)
CELERY_BEAT_SCHEDULE.update(
    {
        "events-relay-sweep": {"task": "payera.events.tasks.event_relay_sweep_task", "schedule": 15.0},
        "events-webhook-retry-sweep": {"task": "payera.events.tasks.webhook_retry_sweep_task", "schedule": 10.0},
        "events-prune": {"task": "payera.events.tasks.event_prune_task", "schedule": 3600.0},
    }
)

# --- Platform: secrets, audit trail, staff roles (appended by the platform work) ---------
# Local secrets backend: "id:base64-32-bytes[,id:key...]", the first key wraps new data keys,
# the others only unwrap older ones (master-key rotation). Empty = a fixed dev key, refused in
# production (docs/secrets.md).
LOCAL_MASTER_KEYS = env("LOCAL_MASTER_KEYS")
VAULT_ADDR = env("VAULT_ADDR")
VAULT_TOKEN = env("VAULT_TOKEN")
VAULT_ROLE_ID = env("VAULT_ROLE_ID")
VAULT_SECRET_ID = env("VAULT_SECRET_ID")
VAULT_APPROLE_MOUNT = env.str("VAULT_APPROLE_MOUNT", default="approle")
VAULT_KV_MOUNT = env("VAULT_KV_MOUNT")
VAULT_KV_PREFIX = env.str("VAULT_KV_PREFIX", default="payera")  # our secrets live at <mount>/payera/...
VAULT_TRANSIT_MOUNT = env("VAULT_TRANSIT_MOUNT")
VAULT_TIMEOUT = env.float("VAULT_TIMEOUT", default=5.0)
VAULT_CACERT = env.str("VAULT_CACERT", default="")  # CA bundle path for a TLS Vault; empty = system CAs

# Audit trail: our LogEntry carries the API key, merchant and request id beside the staff actor.
AUDITLOG_LOGENTRY_MODEL = "audit.AuditLogEntry"
AUDITLOG_DISABLE_REMOTE_ADDR = False
# How many reverse proxies in front of us append to X-Forwarded-For (0: trust only REMOTE_ADDR).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# auditlog's middleware trusts X-Forwarded-For blindly and knows no API keys; ours binds the
# payera.audit actor (staff user, remote address, request id) that every audit record reads.
MIDDLEWARE = [
    "payera.audit.middleware.AuditContextMiddleware" if m == "auditlog.middleware.AuditlogMiddleware" else m
    for m in MIDDLEWARE
]

# Back-office roles (payera.staff): groups defined in payera/staff/roles.py, synced on migrate.
INSTALLED_APPS += ["payera.staff"]
STAFF_MERCHANT_MODEL = "merchants.Merchant"

# --- Back office: staff sign-in and the admin site (payera.backoffice; docs/backoffice.md) --
# PCI DSS 8.3/8.4/8.2.8 for the admin: TOTP second factor (django-otp) for every staff account,
# lockout after 10 failures for 30 minutes (django-axes, in the database: PostgreSQL or SQLite),
# 15 idle minutes per session (SESSION_COOKIE_AGE + SESSION_SAVE_EVERY_REQUEST above), 12+
# character passwords (AUTH_PASSWORD_VALIDATORS above). `admin.site` is BackofficeAdminSite.
INSTALLED_APPS = [
    "payera.backoffice.apps.BackofficeAdminConfig" if app == "django.contrib.admin" else app for app in INSTALLED_APPS
]
INSTALLED_APPS += ["django_otp", "django_otp.plugins.otp_totp", "axes", "payera.backoffice"]
# the payments side of the back office: refund approvals (four eyes), the payment page
INSTALLED_APPS += ["payments.backoffice"]
_auth_at = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
MIDDLEWARE.insert(_auth_at + 1, "django_otp.middleware.OTPMiddleware")
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last: turns a lockout into its own answer
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", *AUTHENTICATION_BACKENDS]
OTP_TOTP_ISSUER = "Payera back office"  # the name authenticator apps show
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = 0.5  # hours: 30 minutes
# An account is locked after 10 failures from anywhere (8.3.4); an address after 10 failures
# over any accounts (password spraying).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True  # consecutive failures count
AXES_CLIENT_IP_CALLABLE = "payera.audit.middleware.client_ip"  # same rule as the audit trail
AXES_USERNAME_CALLABLE = "payera.backoffice.auth.axes_username"  # masks a card number typed as a username
# Kept out of the failure records axes stores (its username column holds the masked username).
AXES_SENSITIVE_PARAMETERS = ["password", "otp_token", "username", "csrfmiddlewaretoken"]
AXES_DISABLE_ACCESS_LOG = True  # sign-ins are in the audit trail (audit.SecurityEvent)
AXES_HTTP_RESPONSE_CODE = 429

# --- Ledger (ledger app) ----------------------------------------------------------------
# Sub-accounts per hot account (docs/decisions/ledger-hot-accounts.md); the posting engine
# ("auto": the PL/pgSQL function on PostgreSQL, the portable Python engine on SQLite).
LEDGER_HOT_SHARDS = 16
LEDGER_ENGINE = "auto"
CELERY_BEAT_SCHEDULE["ledger-pending-expire"] = {"task": "ledger.tasks.pending_expire_task", "schedule": 60.0}

# --- Payments (payments app; docs/payments.md) --------------------------------------------
# Where shoppers and PSPs reach us: the 3-D Secure return URL handed to PSPs is built on it.
PAYERA_PUBLIC_URL = env.str("PAYERA_PUBLIC_URL", default=f"http://127.0.0.1:{env('PORT')}")
PAYMENTS_MAX_ATTEMPTS = 3  # connectors tried per payment
PAYMENTS_INFLIGHT_TIMEOUT = 120  # a crashed mutation's claim
PAYMENTS_STARTED_GRACE_SECONDS = 60
PAYMENTS_PENDING_INQUIRY_SECONDS = 60
PAYMENTS_ACTION_INQUIRY_SECONDS = 900
PAYMENTS_RECOVERY_SCHEDULE = [15, 60, 180, 3600]  # then daily
PAYMENTS_RECOVERY_MAX_INQUIRIES = 9  # then operations
PAYMENTS_AUTHORIZATION_TTL_DAYS = 7
# A payment whose shopper has not come back from the bank's page (bank redirect) or the 3-D Secure
# challenge (card) after this long is canceled at the PSP and fails (`last_error.code =
# "payment_expired"`); a booking's payment waits for the booking's own expiry.
PAYMENTS_REDIRECT_EXPIRY_SECONDS = 1800
PAYMENTS_WEBHOOK_PARK_MAX_TRIES = 10
# The stuck-state sweeper's SLA per "<object>.<state>" in seconds (payments/services/stuck.py
# has the defaults: processing 15 min, requires_action 1 h, in_review 1 h, pending capture or
# refund 15 min, a received but unapplied PSP webhook 5 min); an entry here overrides one.
PAYMENTS_STUCK_SLA_SECONDS: dict[str, int] = {}
# The chargeback fee taken from the merchant with each dispute (returned if won), per currency in
# its own minor units (ISO 4217 exponent: JPY 0, EUR 2, KWD 3), about EUR 15 each. "*": any other
# currency, in hundredths of its major unit scaled to its exponent (a warning each time: add the
# currency here). payera.core.money.per_currency_amount; a malformed table stops the start (checks).
PAYMENTS_CHARGEBACK_FEE: dict[str, int] = {
    "EUR": 1500, "USD": 1500, "GBP": 1500, "CHF": 1500, "CAD": 2000, "AUD": 2500, "NZD": 2500,
    "SEK": 17500, "NOK": 17500, "DKK": 11000, "PLN": 6500, "CZK": 37500, "HUF": 600000, "RON": 7500,
    "JPY": 2500, "KRW": 22000,
    "KWD": 5000, "BHD": 6000, "OMR": 6000, "JOD": 12000, "TND": 50000,
    "*": 1500,
}
PAYMENTS_CIRCUIT_THRESHOLD = 5
PAYMENTS_CIRCUIT_WINDOW = 60
PAYMENTS_CIRCUIT_COOLDOWN = 30
# Merchant fee schedules (Merchant.fee_schedule names one): per payment method type, basis
# points of the gross plus a fixed part in hundredths of the major unit (scaled to the currency).
PAYMENT_FEE_SCHEDULES = {
    "standard": {
        "card": {"percent_bp": 290, "fixed": 30},
        "bank_redirect": {"percent_bp": 150, "fixed": 20},
        "sepa_debit": {"percent_bp": 80, "fixed": 20},
    },
    "zero": {"default": {"percent_bp": 0, "fixed": 0}},
}
CELERY_BEAT_SCHEDULE.update(
    {
        "payments-recovery": {"task": "payments.tasks.recovery_run_task", "schedule": 60.0},
        "payments-psp-webhook-sweep": {"task": "payments.tasks.psp_webhook_sweep_task", "schedule": 30.0},
        "payments-authorization-expiry": {"task": "payments.tasks.authorization_expiry_task", "schedule": 3600.0},
        "payments-redirect-expiry": {"task": "payments.tasks.redirect_expiry_task", "schedule": 60.0},
        "payments-stuck-sweep": {"task": "payments.tasks.stuck_sweep_task", "schedule": 300.0},
        # an approved four-eyes refund whose sending did not end (crash, busy payment) is sent once
        "payments-refund-approvals-resume": {
            "task": "payments.backoffice.tasks.refund_approvals_resume_task", "schedule": 60.0,
        },
    }
)
# Bookings (escrow): unconfirmed holds are voided at their hold_expires_at (checked every minute);
# a booking's hold may be at most this many days long (the card networks' authorization life).
BOOKINGS_MAX_HOLD_DAYS = 7
CELERY_BEAT_SCHEDULE["payments-booking-expiry"] = {"task": "payments.tasks.booking_expiry_task", "schedule": 60.0}

# --- Settlement and payouts (reconciliation app; docs/settlement.md) ----------------------
# Daily, UTC: settle first (pending -> available), then create payouts from available.
# Per-merchant minimum payout and reserve live in reconciliation.MerchantPayoutSettings
# (default reserve: reconciliation.models.DEFAULT_RESERVE_BPS). A merchant without its own minimum
# gets the payout currency's default below, in that currency's minor units, about EUR 10 each; "*"
# as in PAYMENTS_CHARGEBACK_FEE (payera.core.money.per_currency_amount).
RECONCILIATION_PAYOUT_MINIMUM: dict[str, int] = {
    "EUR": 1000, "USD": 1000, "GBP": 1000, "CHF": 1000, "CAD": 1500, "AUD": 1500, "NZD": 1500,
    "SEK": 12000, "NOK": 12000, "DKK": 7500, "PLN": 4500, "CZK": 25000, "HUF": 400000, "RON": 5000,
    "JPY": 1500, "KRW": 15000,
    "KWD": 3000, "BHD": 4000, "OMR": 4000, "JOD": 7500, "TND": 35000,
    "*": 1000,
}
from celery.schedules import crontab  # noqa: E402

CELERY_BEAT_SCHEDULE["reconciliation-settlement-run"] = {
    "task": "reconciliation.tasks.settlement_run_task",
    "schedule": crontab(hour=0, minute=15),
}
CELERY_BEAT_SCHEDULE["reconciliation-payout-run"] = {
    "task": "reconciliation.tasks.payout_run_task",
    "schedule": crontab(hour=1, minute=15),
}
# PSP settlement reports: pull yesterday's report of every connector and reconcile it (docs/reconciliation.md).
# The nightly pull also fetches the earlier days of this window that no finished import covers
# (a night the PSP could not be reached): docs/reconciliation.md, "Three ways in".
RECONCILIATION_PULL_CATCH_UP_DAYS = env.int("RECONCILIATION_PULL_CATCH_UP_DAYS", default=7)
# A day whose pulled file does not import (refused: malformed, cut short; or its import failed) is
# fetched again each night of the window; from this many failed nights on it is flagged for operations
# (error log, dashboard "Settlement reports", gauge payera_reconciliation_pull_failing_days; runbook
# reconciliation-pull-failing.md).
RECONCILIATION_PULL_ALERT_AFTER_FAILURES = env.int("RECONCILIATION_PULL_ALERT_AFTER_FAILURES", default=3)
# Four eyes on finance's money resolutions of discrepancies (an adjustment, a line settled as
# reported, a write-off, a move out of suspense): one that takes what an item's resolutions moved
# without approval above the threshold of its currency waits for a second user holding the same
# permission (docs/reconciliation.md, "Four eyes"). Per currency, in its own minor units:
# RECONCILIATION_APPROVAL_THRESHOLDS (env: "JPY=150000,KRW=1500000"); a currency not named there
# takes RECONCILIATION_APPROVAL_THRESHOLD, in hundredths of the major unit scaled to its ISO 4217
# exponent (100000: 1,000.00 EUR, ¥1,000, 1,000.000 BHD; payera.core.money.per_currency_amount).
# 0: every one that moves money does. Checked at start (reconciliation.E004).
RECONCILIATION_APPROVAL_THRESHOLD = env.int("RECONCILIATION_APPROVAL_THRESHOLD", default=100_000)


def _approval_thresholds(raw: str, name: str = "RECONCILIATION_APPROVAL_THRESHOLDS",
                         fallback: str = "RECONCILIATION_APPROVAL_THRESHOLD") -> dict[str, int | str]:
    """`CODE=amount,CODE=amount` -> {"CODE": amount}. What is not one entry per currency stops the
    start here (no silent default: a `*` entry, a code twice, an entry without `=`); codes and amounts
    are judged by the check (reconciliation.E004 / E005: unknown code, negative or non-integer amount).
    `name`: the variable read; `fallback`: what the currencies it does not name take."""
    table: dict[str, int | str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        code, sep, amount = (part.strip() for part in entry.partition("="))
        code = code.upper()
        problem = (
            "write CODE=amount" if not sep or not code
            else f"the currencies not named take {fallback}" if code == "*"
            else f"{code} twice" if code in table else ""
        )  # fmt: skip
        if problem:
            raise ImproperlyConfigured(f"{name}: {entry!r}: {problem} (CODE=amount in"
                                       " the currency's minor units, comma-separated)")  # fmt: skip
        digits = amount[1:] if amount.startswith("-") else amount
        table[code] = int(amount) if digits.isascii() and digits.isdigit() else amount  # else E004 says so
    return table


RECONCILIATION_APPROVAL_THRESHOLDS = _approval_thresholds(env.str("RECONCILIATION_APPROVAL_THRESHOLDS", default=""))
# Four eyes per user and day: what one user's money resolutions of discrepancies moved without a
# second user's approval in a currency on one UTC day is summed, and the resolution that would take
# that total past the currency's daily limit waits for a second user as one above the threshold does
# (docs/reconciliation.md, "Four eyes"). Per currency, in its own minor units, as the thresholds
# (env: "EUR=2000000,JPY=3000000"); a currency not named: 5 times its approval threshold
# (reconciliation.services.discrepancies.DAILY_LIMIT_MULTIPLE; 500000: 5,000.00 EUR by default).
# 0: every resolution made alone needs a second user. Checked at start (reconciliation.E005).
RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS = _approval_thresholds(
    env.str("RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS", default=""), "RECONCILIATION_DAILY_SINGLE_HANDED_LIMITS",
    "5 times their approval threshold",
)
# An import that progressed (its run's heartbeat: a chunk loaded, a phase begun, a heal inquiry)
# within this many minutes is running: the same file, or another file of an overlapping period, is
# `settlement_run_busy`; one that has not progressed for longer crashed and the next import takes
# it over (docs/reconciliation.md, "Import once").
RECONCILIATION_RUN_BUSY_MINUTES = env.float("RECONCILIATION_RUN_BUSY_MINUTES", default=30.0)
# The nightly pull waits for an import of the same period that is running (the admin upload or the
# command at the same time) and imports its file once that one has finished: it tries again every
# POLL seconds for up to WAIT seconds (default: the busy window).
RECONCILIATION_PULL_BUSY_POLL_SECONDS = env.float("RECONCILIATION_PULL_BUSY_POLL_SECONDS", default=15.0)
RECONCILIATION_PULL_BUSY_WAIT_SECONDS = env.float(
    "RECONCILIATION_PULL_BUSY_WAIT_SECONDS", default=RECONCILIATION_RUN_BUSY_MINUTES * 60
)
# One pull (every PSP, every day it fetches, its waits) stops after this many seconds and leaves the
# days it has not imported for the next pull: safely under the broker's visibility_timeout (3600 s),
# past which the broker would deliver the pull's task again (a second pull beside the first). The
# system check reconciliation.E003 keeps it at least 600 s under that timeout (the last import
# started before the deadline runs to its end).
RECONCILIATION_PULL_DEADLINE_SECONDS = env.float("RECONCILIATION_PULL_DEADLINE_SECONDS", default=2700.0)
CELERY_BEAT_SCHEDULE["reconciliation-report-pull"] = {
    "task": "reconciliation.tasks.reconcile_pull_task",
    "schedule": crontab(hour=2, minute=30),
}
# The late heal (docs/reconciliation.md, "Late heal"): the waiting "missing in Payera" lines of runs
# younger than RECONCILIATION_REHEAL_MAX_AGE_DAYS are asked about again (at most
# RECONCILIATION_REHEAL_LIMIT per pass), every RECONCILIATION_REHEAL_INTERVAL_SECONDS.
RECONCILIATION_REHEAL_INTERVAL_SECONDS = env.float("RECONCILIATION_REHEAL_INTERVAL_SECONDS", default=3600.0)
RECONCILIATION_REHEAL_MAX_AGE_DAYS = env.int("RECONCILIATION_REHEAL_MAX_AGE_DAYS", default=30)
RECONCILIATION_REHEAL_LIMIT = env.int("RECONCILIATION_REHEAL_LIMIT", default=500)
CELERY_BEAT_SCHEDULE["reconciliation-reheal"] = {
    "task": "reconciliation.tasks.reconcile_reheal_task",
    "schedule": RECONCILIATION_REHEAL_INTERVAL_SECONDS,
}

# --- Reliability and operations (issue 10; docs/slo.md) ---------------------------------
# Every operation documents the contract's error answers (payera.core.openapi).
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "payera.core.openapi.add_error_responses",
]
# NUL characters are refused at the edge (PostgreSQL text cannot hold them): query strings by
# the middleware, JSON bodies by the parser.
_request_id_at = MIDDLEWARE.index("payera.core.middleware.RequestIdMiddleware")
MIDDLEWARE.insert(_request_id_at + 1, "payera.core.middleware.NulByteGuardMiddleware")
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["payera.core.parsers.JSONParser"]

# Prometheus (payera.core.metrics; docs/slo.md): django-prometheus counts requests and latency
# (its middleware first and last); /metrics needs `Authorization: Bearer <METRICS_TOKEN>`, or
# comes from loopback when no token is set. Several gunicorn workers: PROMETHEUS_MULTIPROC_DIR.
INSTALLED_APPS += ["django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    *MIDDLEWARE,
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
PROMETHEUS_EXPORT_MIGRATIONS = False

# The merchant API (`/v1/`, API-key authenticated) passes through the browser-only middleware:
# sessions, the staff user and its second factor, messages (payera.core.browser_middleware;
# docs/decisions/api-middleware-chain.md). Same classes, same order: the back office is unchanged.
# CSRF and axes stay as they are: their system checks (security.W003, axes.W002) want their exact
# classes, and on the API (csrf_exempt views) they return at once.
_BROWSER_ONLY = {
    "django.contrib.sessions.middleware.SessionMiddleware": "payera.core.browser_middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware":
        "payera.core.browser_middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware": "payera.core.browser_middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware": "payera.core.browser_middleware.MessageMiddleware",
}
MIDDLEWARE = [_BROWSER_ONLY.get(m, m) for m in MIDDLEWARE]
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# slo_report reads the API SLOs (requests, 5xx, latency) from Prometheus' HTTP API here.
SLO_PROMETHEUS_URL = env.str("SLO_PROMETHEUS_URL", default="")

# --- Subscriptions (payments.services.subscriptions; docs/api.md "Subscriptions") ---------
# Dunning: a failed period charge is retried this many days after its first failure (soft
# declines only), then the subscription is `unpaid`.
SUBSCRIPTIONS_RETRY_DAYS = [1, 3, 5, 7]
CELERY_BEAT_SCHEDULE["payments-subscriptions"] = {"task": "payments.tasks.subscriptions_run_task", "schedule": 60.0}
