"""Test settings: the served setup (PostgreSQL, Redis) unless env vars say otherwise."""

import os
import uuid

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("LOG_JSON", "true")
# One cache namespace per test run and xdist worker: a circuit breaker opened (or closed, as every
# test's setup does) by one worker must not reroute (or reset) the other's. The run's id is drawn
# by the first process importing these settings (pytest's controller with -n, where pytest-django
# imports them before xdist starts the workers) and inherited with the environment by its workers
# and their subprocesses; the worker id is each worker's own. Not a setdefault of the prefix: the
# workers inherited the controller's "payera-test-main" and shared it
# (tests/core/test_test_cache_prefix.py).
# (PAYERA_TEST_RUN is the test harness's own, not an operator's setting: not in .env.example)
_TEST_RUN = os.environ.get("PAYERA_TEST_RUN") or uuid.uuid4().hex[:12]
os.environ["PAYERA_TEST_RUN"] = _TEST_RUN
os.environ["CACHE_KEY_PREFIX"] = f"payera-test-{_TEST_RUN}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
os.environ.setdefault("PAYERA_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "var", "test"))

from payera.settings.base import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in base
# An event type missing from payera.events.types.KNOWN_EVENT_TYPES raises (production logs it).
EVENTS_REFUSE_UNKNOWN_TYPES = True
