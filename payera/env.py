"""Environment parsing for settings (django-environ), in one place.

Every variable the settings read is declared here with its type and embedded-mode default,
so `.env.example` and docs/deploy.md can be checked against one list.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

DEFAULT_SECRET_KEY = "payera-insecure-dev-key-change-me"  # noqa: S105 - refused in production

env = environ.Env(
    DJANGO_ENV=(str, "development"),
    DEBUG=(bool, False),
    SECRET_KEY=(str, DEFAULT_SECRET_KEY),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "testserver"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
    DATABASE_URL=(str, f"sqlite:///{BASE_DIR / 'var' / 'payera.sqlite3'}"),
    REDIS_URL=(str, ""),
    CELERY_BROKER_URL=(str, ""),
    CELERY_TASK_ALWAYS_EAGER=(bool, False),
    SECRETS_BACKEND=(str, "local"),
    LOCAL_MASTER_KEYS=(str, ""),
    VAULT_ADDR=(str, ""),
    VAULT_TOKEN=(str, ""),
    VAULT_ROLE_ID=(str, ""),
    VAULT_SECRET_ID=(str, ""),
    VAULT_KV_MOUNT=(str, "secret"),
    VAULT_TRANSIT_MOUNT=(str, "transit"),
    LOG_LEVEL=(str, "INFO"),
    LOG_JSON=(bool, True),
    PORT=(int, 8000),
    SANDBOX_ALPHA_URL=(str, "http://127.0.0.1:8101"),
    SANDBOX_BETA_URL=(str, "http://127.0.0.1:8102"),
    SANDBOX_DATA_DIR=(str, str(BASE_DIR / "var" / "sandbox")),
    WEBHOOK_ALLOW_PRIVATE_URLS=(bool, True),
    SECURE_SSL_REDIRECT=(bool, True),
)
