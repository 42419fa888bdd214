"""A cancel under way (its void answered pending) must not be taken over by a capture.

A void an asynchronous PSP answered `pending` keeps the payment's `cancel` claim until the PSP
says (docs/api.md: "another capture or cancel meanwhile is 409 payment_in_progress"). But the
claim was an ordinary in-flight claim: once older than PAYMENTS_INFLIGHT_TIMEOUT (120 s, meant
for a crashed request) a capture took it over and was sent to the PSP while the void was still
pending there. The merchant, told the cancel was under way, could capture the same
authorization (goods shipped as paid) while the PSP was voiding it; and the `cancel` claim,
overwritten by `capture`, was no longer what recovery looks for, so the pending void's refusal
never told the merchant (`payment.cancel_failed`). Now a capture is refused (409) while a cancel
is under way, however long the PSP takes; recovery's inquiry or the void's webhook ends it.

The PSP is the alpha stand-in answering the void pending (its wire format).
"""

from __future__ import annotations

import datetime as dt

import pytest

from payments.models import AS, PS, Capture, Payment
from payments.services import payment_cancel, payment_capture
from payments.services.common import PaymentInProgressError
from tests.payments.standin_alpha import authorized_at_standin

pytestmark = pytest.mark.django_db


def test_a_capture_is_refused_while_a_pending_void_is_older_than_the_inflight_timeout(psp_settings, settings):
    with authorized_at_standin(settings, void="pending_then_failed") as (merchant, psp, payment):
        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"
        # the PSP takes its time: the cancel under way is older than the in-flight timeout
        Payment.objects.filter(pk=payment.id).update(
            inflight_at=Payment.objects.get(pk=payment.id).inflight_at
            - dt.timedelta(seconds=settings.PAYMENTS_INFLIGHT_TIMEOUT + 1)
        )
        with pytest.raises(PaymentInProgressError):
            payment_capture(merchant=merchant, payment_id=payment.id)
        payment = Payment.objects.get(pk=payment.id)
        assert (payment.status, payment.inflight) == (PS.REQUIRES_CAPTURE, "cancel")
        assert payment.attempts.get().status == AS.AUTHORIZED
        assert not Capture.objects.filter(payment_id=payment.id).exists()
        assert psp.captures == 0  # nothing sent to the PSP
