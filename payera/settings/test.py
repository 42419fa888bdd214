"""Test settings: the served setup (PostgreSQL, Redis) unless env vars say otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("LOG_JSON", "true")
# One cache namespace per xdist worker (subprocesses inherit it): a circuit breaker opened by one
# worker's timeouts must not reroute the other worker's payments.
os.environ.setdefault("CACHE_KEY_PREFIX", "payera-test-" + os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ.setdefault("PAYERA_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "var", "test"))

from payera.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in base
# An event type missing from payera.events.types.KNOWN_EVENT_TYPES raises (production logs it).
EVENTS_REFUSE_UNKNOWN_TYPES = True
