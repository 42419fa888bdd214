"""The inbox applied by a real Celery worker (a subprocess on Redis and the test database): a
beta payment completes with nobody calling the services by hand. Skipped on the embedded run
(the worker fixture needs PostgreSQL and Redis)."""

from __future__ import annotations

import time

import pytest

from payments.models import InboxStatus, PspWebhook
from tests.events.conftest import celery_worker, celery_worker_process  # noqa: F401 - the session's real worker
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


def test_webhooks_delivered_five_times_in_reverse_order_through_the_worker_give_one_transition_and_posting(
    env, celery_worker,  # noqa: F811
):
    """Issue 6's first promise with the real worker applying the inbox (no sweep by hand)."""
    from ledger.selectors import journal_list
    from payments.models import PaymentEvent

    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    sb = env.sandboxes["beta"]
    sb.set_webhook_url("")  # hold beta's webhooks: the test delivers them
    try:
        p = env.pay()
        att = p["attempts"][0]["id"]
        deadline = time.monotonic() + 10
        while not (events := [e for e in sb.events() if att in e["body"]]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")
        for e in reversed(events * 5):
            sb.resend(e["id"])
        deadline = time.monotonic() + 30
        while not (env.get(p["id"])["status"] == "succeeded" and PspWebhook.objects.filter(reference=att).exists()
                   and not PspWebhook.objects.filter(reference=att, status=InboxStatus.RECEIVED).exists()):
            assert time.monotonic() < deadline, celery_worker.log()[-3000:]
            time.sleep(0.2)
        time.sleep(1.0)  # every repeat has arrived and been applied (or found a no-op)
        assert PspWebhook.objects.filter(reference=att).count() == len({e["id"] for e in events})
        moves = PaymentEvent.objects.filter(payment_id=p["id"], object_type="payment", to_status="succeeded").count()
        assert moves == 1
        assert journal_list(owner=env.merchant.id).filter(reference__startswith="capture:").count() == 1
        assert pending_eur(env) == 1000 - fee(1000)
        assert_ledger_sound()
    finally:
        sb.set_webhook_url(f"{env.url}/webhooks/psp/beta/")
