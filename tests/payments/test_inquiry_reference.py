"""An inquiry answer about ANOTHER reference is never recorded for our attempt (session 14).

Session 13 found a webhook naming our attempt with another payment's pspReference "confirmed" by
that other payment's inquiry. Only the webhook path and the redirect expiry checked who the answer
was about; recovery's `attempt_recover` and `cancel_recover` asked the PSP by the attempt's stored
pspReference and recorded whatever came back. Every inquiry of an attempt now goes through
`payments.services.inquiry.attempt_inquire`, which refuses an answer about another reference.

Here the attempt's stored pspReference points at another payment's authorization at the real alpha
sandbox (over HTTP), which answers truthfully about that other one."""

from __future__ import annotations

import pytest

from ledger.selectors import journal_list
from payments.models import AS, PS, Payment, PaymentAttempt
from payments.services import payment_cancel, payment_create, recovery_run
from payments.services.payments import _cancel_begin
from payments.services.recovery import attempt_recover, cancel_recover
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def _point_at(attempt_id: str, other_attempt_id: str) -> str:
    """Store the other attempt's pspReference on ours (what a forged or buggy hint would leave)."""
    other = PaymentAttempt.objects.get(pk=other_attempt_id).psp_reference
    assert other
    PaymentAttempt.objects.filter(pk=attempt_id).update(psp_reference=other)
    return other


def test_attempt_recover_refuses_an_answer_about_another_payment(psp_settings, settings, caplog):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    sb = psp_settings["alpha"]
    merchant = MerchantFactory(connectors=["alpha"])
    # ours: alpha's gateway answers 504 and alpha records nothing -> attempt `unknown`
    ours = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                          metadata={"sandbox_fail_alpha": "504"})
    assert ours.status == PS.PROCESSING
    att = ours.attempts.get()
    assert att.status == AS.UNKNOWN and sb.payments(att.id) == []
    # another payment of the same amount, captured at alpha
    other = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert other.status == PS.SUCCEEDED
    _point_at(att.id, other.attempts.get().id)
    captures = journal_list(owner=merchant.id).filter(reference__startswith="capture:").count()

    assert attempt_recover(attempt_id=att.id) is False
    recovery_run(force=True)

    payment = Payment.objects.get(pk=ours.id)
    attempt = PaymentAttempt.objects.get(pk=att.id)
    assert payment.status == PS.PROCESSING, f"settled by another payment's authorization: {attempt.status}"
    assert attempt.status == AS.UNKNOWN and attempt.needs_attention, (attempt.status, attempt.error)
    assert "psp_inquiry_reference_mismatch" in attempt.error
    assert journal_list(owner=merchant.id).filter(reference__startswith="capture:").count() == captures, \
        "a capture alpha never made for this payment was posted"
    assert any("refused" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_cancel_recover_refuses_an_answer_about_another_payment(psp_settings, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    sb = psp_settings["alpha"]
    merchant = MerchantFactory(connectors=["alpha"])
    ours = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                          capture_method="manual")
    other = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                           capture_method="manual")
    assert (ours.status, other.status) == (PS.REQUIRES_CAPTURE, PS.REQUIRES_CAPTURE)
    other_att = other.attempts.get().id
    assert payment_cancel(merchant=merchant, payment_id=other.id).status == PS.CANCELED
    att = ours.attempts.get().id
    _point_at(att, other_att)
    # our cancel crashed after its claim, before any void: alpha holds ours authorized
    _cancel_begin(merchant=merchant, payment_id=ours.id, actor="api")
    assert [p["state"] for p in sb.payments(att)] == ["authorized"]

    cancel_recover(payment_id=ours.id)
    recovery_run(force=True)

    payment = Payment.objects.get(pk=ours.id)
    attempt = PaymentAttempt.objects.get(pk=att)
    assert (payment.status, attempt.status) == (PS.REQUIRES_CAPTURE, AS.AUTHORIZED), (
        "canceled because ANOTHER authorization is voided at alpha: "
        f"{payment.status}/{attempt.status}, alpha holds ours {[p['state'] for p in sb.payments(att)]}"
    )
    assert payment.inflight == "cancel"  # whether our void arrived is unknown: the claim stays


def test_the_shoppers_return_refuses_an_answer_about_another_payment(psp_settings):
    """The 3-D Secure return asks the PSP too (`complete_authentication`, an inquiry at both
    sandboxes): the same refusal applies."""
    from payments.services import payment_authentication_complete

    merchant = MerchantFactory(connectors=["alpha"])
    challenge = {"type": "card", "card": {**CARD["card"], "number": "4000000000003220"}}
    ours = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=challenge)
    assert ours.status == PS.REQUIRES_ACTION
    other = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert other.status == PS.SUCCEEDED
    att = ours.attempts.get().id
    _point_at(att, other.attempts.get().id)
    captures = journal_list(owner=merchant.id).filter(reference__startswith="capture:").count()

    payment_authentication_complete(payment_id=ours.id)

    payment = Payment.objects.get(pk=ours.id)
    assert (payment.status, PaymentAttempt.objects.get(pk=att).status) == (PS.REQUIRES_ACTION, AS.REQUIRES_ACTION)
    assert journal_list(owner=merchant.id).filter(reference__startswith="capture:").count() == captures


def test_operation_recover_refuses_an_answer_about_another_payment(psp_settings, settings):
    """A crashed capture (alpha captured, the outcome was not stored: crash point 3b) is resolved
    from the authorization's operations; an answer about another authorization does not list ours,
    which used to record our capture `failed` ("never arrived") although alpha had taken it."""
    from payments.models import Capture, OperationStatus
    from payments.services.payments import _capture_begin
    from psp_adapters.port import CaptureRequest, PspReference
    from psp_adapters.registry import get_adapter

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    ours = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                          capture_method="manual")
    other = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    attempt = ours.attempts.get()
    capture = _capture_begin(merchant=merchant, payment_id=ours.id, amount=None, actor="api")
    get_adapter("alpha").capture(CaptureRequest(payment=PspReference(attempt.id, attempt.psp_reference),
                                                reference=capture.id, amount=1000, currency="EUR", final=True))
    _point_at(attempt.id, other.attempts.get().id)

    recovery_run(force=True)

    assert Capture.objects.get(pk=capture.id).status == OperationStatus.PENDING, \
        "recorded as never arrived from another authorization's operations, though alpha captured it"
    assert Payment.objects.get(pk=ours.id).status == PS.REQUIRES_CAPTURE
