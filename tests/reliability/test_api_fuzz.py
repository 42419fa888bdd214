"""API fuzzing in CI: every operation of the live schema, authenticated with a real merchant key.

The schema is read from the running app's `/v1/schema/` at collection, so an endpoint added
later is one more test here without any change. Bounded (FUZZ_EXAMPLES per operation, 50 by
default) and derandomized, so a CI run is repeatable; `python -m bench.fuzz --minutes N` is
the long, random hunt.
"""

from __future__ import annotations

import os

import pytest
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from tests.reliability.fuzz import CHECKS, load_schema

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
# CI: derandomized (the same examples every run). bench/fuzz sets FUZZ_RANDOM=1 and a seed.
DERANDOMIZE = not os.environ.get("FUZZ_RANDOM")

schema = load_schema()


@pytest.fixture(autouse=True)
def _fuzz_environment(settings):
    # As Django's test client does: a request must not close the test's connection (its
    # transaction is what isolates the test).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "100000/s"}}
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False  # a fuzzed webhook URL is never called
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hsettings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case, api_key):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api_key.secret}"}
    response = case.call_and_validate(checks=CHECKS)
    # The key must have been used: a 401 here would mean we fuzzed only the auth wall.
    assert response.status_code != 401, response.text
