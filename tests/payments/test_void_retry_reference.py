"""A cancel the PSP refused can be canceled again (session 18's review).

Every void of an attempt was sent under one reference, `vd_<attempt>`. PSPs are idempotent by
reference: a second void under it is answered with the first one's result. So after a refused
void, the merchant's second cancel (docs/api.md: "cancel it again") got the old refusal back
(`cancel_failed`) and never reached the PSP again; the authorization expiry, which cancels the
same way, refused forever too.

Now an attempt numbers its voids (`PaymentAttempt.void_number`): the first is `vd_<attempt>` (as
before: existing rows and inquiries stay valid), the next after a *refusal* `vd_<attempt>_2`, and
so on. A void whose outcome is unknown (a crash after the PSP call, a timeout) is sent again under
the SAME reference: the PSP's idempotency then answers the first void's result, never a second
void. Inquiries, webhooks and recovery match the current void; an earlier void's late webhook is
stale news.

The refusing PSP is a stand-in for alpha (its wire format; the alpha sandbox never refuses a void);
the crash test runs against the real alpha sandbox.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import payments.services.payments as payments_module
from ledger.models import Journal
from payments.models import AS, PS, InboxStatus, Payment, PaymentAttempt, PspWebhook
from payments.services import payment_cancel, recovery_run
from payments.services.payments import (
    PaymentNotCancelableError,
    PspOperationFailedError,
    payment_expire_authorizations,
    void_reference,
)
from payments.services.webhooks import psp_webhook_process
from tests.helpers import authorized_payment, event_types
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import alpha_void_webhook, authorized_at_standin
from tests.scenarios.conftest import assert_ledger_sound

pytestmark = pytest.mark.django_db


def _refs(attempt_id: str, *numbers: int) -> list[str]:
    body = attempt_id.removeprefix("att_")
    return [f"vd_{body}" if n == 1 else f"vd_{body}_{n}" for n in numbers]


def _refused(merchant, payment) -> None:
    with pytest.raises(PspOperationFailedError) as refused:
        payment_cancel(merchant=merchant, payment_id=payment.id)
    assert refused.value.code == "cancel_failed"
    payment = Payment.objects.get(pk=payment.id)
    assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "")


def _canceled_once(merchant, payment) -> None:
    payment = Payment.objects.get(pk=payment.id)
    assert (payment.status, payment.inflight) == (PS.CANCELED, "")
    attempt = payment.attempts.get()
    assert attempt.status == AS.VOIDED
    assert event_types(merchant).count("payment.canceled") == 1
    # an authorization has no journal: voiding it posts nothing, whatever the retries
    assert not Journal.objects.filter(reference__contains=attempt.id).exists()
    assert_ledger_sound()


def test_void_references_keep_the_first_and_number_the_rest():
    assert void_reference("att_0123456789abcdefABCDEF") == "vd_0123456789abcdefABCDEF"
    assert void_reference("att_0123456789abcdefABCDEF", 1) == "vd_0123456789abcdefABCDEF"
    assert void_reference("att_0123456789abcdefABCDEF", 3) == "vd_0123456789abcdefABCDEF_3"


def test_a_cancel_refused_by_the_psp_is_sent_again_under_a_new_reference(psp_settings, settings):
    with authorized_at_standin(settings, voids=("refuse",)) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        _refused(merchant, payment)

        answered = payment_cancel(merchant=merchant, payment_id=payment.id)  # "cancel it again"
        assert answered.status == PS.CANCELED
        assert psp.void_references == _refs(attempt.id, 1, 2)
        _canceled_once(merchant, payment)
        [voided] = psp.auths.values()
        assert voided["status"] == "voided"

        with pytest.raises(PaymentNotCancelableError):  # canceled: nothing more is sent
            payment_cancel(merchant=merchant, payment_id=payment.id)
        assert psp.void_references == _refs(attempt.id, 1, 2)
        _canceled_once(merchant, payment)


def test_a_void_refused_later_then_a_new_cancel_and_the_first_voids_late_webhook(psp_settings, settings):
    """The first void answered pending and refused later (found by recovery, told once); the second
    cancel's void is pending at the PSP when the first void's `void.failed` webhook arrives late:
    stale news of a superseded void — the second cancel stays under way (no claim released, no
    second `payment.cancel_failed`, not parked), and ends canceled when the PSP voids."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings, voids=("pending_then_failed", "pending")) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        recovery_run(force=True)  # the PSP says: refused
        assert event_types(merchant).count("payment.cancel_failed") == 1
        assert Payment.objects.get(pk=payment.id).inflight == ""

        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        assert psp.void_references == _refs(attempt.id, 1, 2)
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"

        [auth] = psp.auths.values()
        [first] = [o for o in auth["operations"] if o["merchant_reference"] == _refs(attempt.id, 1)[0]]
        row = alpha_void_webhook(secret, "evt_first_void_failed", first)
        note = psp_webhook_process(webhook_id=row.pk)
        assert PspWebhook.objects.get(pk=row.pk).status == InboxStatus.IGNORED, note  # stale: not parked
        payment = Payment.objects.get(pk=payment.id)
        assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "cancel")
        assert event_types(merchant).count("payment.cancel_failed") == 1

        recovery_run(force=True)  # the second void still pending at the PSP: the claim stays
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"
        psp.void_carry_out()
        recovery_run(force=True)
        _canceled_once(merchant, payment)
        assert event_types(merchant).count("payment.cancel_failed") == 1
        assert psp.void_references == _refs(attempt.id, 1, 2)


def test_the_authorization_expiry_retries_a_refused_void_under_a_new_reference(psp_settings, settings):
    with authorized_at_standin(settings, voids=("refuse",)) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        Payment.objects.filter(pk=payment.pk).update(authorized_at=timezone.now() - dt.timedelta(days=8))

        assert payment_expire_authorizations() == []  # refused: the next run retries
        assert payment_expire_authorizations() == [payment.id]
        assert psp.void_references == _refs(attempt.id, 1, 2)
        _canceled_once(merchant, payment)


def _crash_after_the_psp_call(monkeypatch) -> None:
    """The process dies once between the void's answer and its recording."""
    record = payments_module._cancel_record
    crashed = []

    def crash(**kwargs):
        if not crashed:
            crashed.append(kwargs)
            raise SystemExit("killed after the PSP answered")
        return record(**kwargs)

    monkeypatch.setattr(payments_module, "_cancel_record", crash)


def test_a_retry_after_a_crash_after_the_void_reuses_its_reference(psp_settings, settings, monkeypatch):
    """Real alpha sandbox: the void was done, its answer never recorded. The merchant's retry (the
    claim taken over after PAYMENTS_INFLIGHT_TIMEOUT) sends the same reference: the sandbox answers
    the first void — one void at the PSP, the payment canceled once."""
    sb = psp_settings["alpha"]
    merchant = MerchantFactory(connectors=["alpha"])
    payment = authorized_payment(merchant)
    attempt = payment.attempts.get()
    _crash_after_the_psp_call(monkeypatch)
    with pytest.raises(SystemExit):
        payment_cancel(merchant=merchant, payment_id=payment.id)
    assert Payment.objects.get(pk=payment.id).inflight == "cancel"
    [held] = sb.payments(attempt.id)
    assert held["state"] == "voided"

    settings.PAYMENTS_INFLIGHT_TIMEOUT = 0  # the crashed request's claim may be taken over
    assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.CANCELED
    [held] = sb.payments(attempt.id)
    voids = [op for op in held["operations"] if op["kind"] == "void"]
    assert [op["reference"] for op in voids] == _refs(attempt.id, 1)
    _canceled_once(merchant, payment)
    assert PaymentAttempt.objects.get(pk=attempt.id).void_number == 1


def test_a_refusal_lost_in_a_crash_is_learned_under_the_same_reference_then_a_new_one(
    psp_settings, settings, monkeypatch
):
    """The PSP refused the void and the process died before recording it: the retry must not guess
    (the outcome is unknown to Payera), so it asks under the same reference and learns the refusal;
    only then does the next cancel send a new void."""
    with authorized_at_standin(settings, voids=("refuse",)) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        _crash_after_the_psp_call(monkeypatch)
        with pytest.raises(SystemExit):
            payment_cancel(merchant=merchant, payment_id=payment.id)
        settings.PAYMENTS_INFLIGHT_TIMEOUT = 0
        _refused(merchant, payment)  # the first void's refusal, answered again by the PSP
        assert psp.void_references == _refs(attempt.id, 1, 1)

        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.CANCELED
        assert psp.void_references == _refs(attempt.id, 1, 1, 2)
        _canceled_once(merchant, payment)


def test_recovery_of_a_crashed_cancel_asks_about_the_current_void(psp_settings, settings, monkeypatch):
    """After a refused first void, the second cancel's request dies after the PSP voided: recovery's
    cancel step finds the second void (not the first one's refusal) and the payment is canceled."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    with authorized_at_standin(settings, voids=("refuse",)) as (merchant, _, payment):
        _refused(merchant, payment)
        _crash_after_the_psp_call(monkeypatch)
        with pytest.raises(SystemExit):
            payment_cancel(merchant=merchant, payment_id=payment.id)
        assert recovery_run(force=True)["cancels"] == 1
        _canceled_once(merchant, payment)
        assert event_types(merchant).count("payment.cancel_failed") == 0  # the refusal was answered, not sent
