"""The inbox applied by a real Celery worker (a subprocess on Redis and the test database): a
beta payment completes with nobody calling the services by hand. Skipped on the embedded run
(the worker fixture needs PostgreSQL and Redis)."""

from __future__ import annotations

import time

import pytest

from payments.models import InboxStatus, PspWebhook
from tests.events.conftest import celery_worker  # noqa: F401 - the session's real worker
from tests.scenarios.conftest import assert_ledger_sound, fee, pending_eur

pytestmark = [pytest.mark.scenario]


def test_beta_payment_completes_through_the_worker(env, celery_worker):  # noqa: F811
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    p = env.pay()
    assert p["status"] == "processing"
    att = p["attempts"][0]["id"]
    deadline = time.monotonic() + 20
    # The payment's transition and the inbox row's `processed` mark commit one after the other:
    # wait for both, never assume their order.
    while not (
        env.get(p["id"])["status"] == "succeeded"
        and PspWebhook.objects.filter(reference=att, status=InboxStatus.PROCESSED).exists()
    ):
        assert time.monotonic() < deadline, celery_worker.log()[-3000:]
        time.sleep(0.2)
    assert pending_eur(env) == 1000 - fee(1000)
    assert_ledger_sound()
