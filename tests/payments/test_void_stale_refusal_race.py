"""A refusal of an earlier void, recorded late, must not end the cancel under way (session 19's review).

Voids are numbered per attempt (`PaymentAttempt.void_number`): the refusal of void 1 moves the attempt
to void 2, and the merchant may cancel again (void 2 pending at the PSP, its `cancel` claim held).
`cancel_recover` (recovery's cancel step, a void webhook) reads the current void number, asks the PSP
and records the answer in `_cancel_record`. Two of them may run for the same refusal at once (the
void's webhook and recovery's cancel step; or two deliveries): the first records the refusal (claim
released, `payment.cancel_failed`, void 2 next), the merchant cancels again, and the second —
whose inquiry was under way meanwhile — recorded void 1's refusal again: `void_refused` saw the
number had moved on, but the claim it released and the `payment.cancel_failed` it sent were the
SECOND cancel's, whose void was still pending at the PSP (and later voided: `canceled` after two
`cancel_failed`, the payment capturable meanwhile with a void pending at the PSP).

Real threads against PostgreSQL and the stand-in alpha over HTTP; the only thing held is the
second inquiry's answer on its way back (outside the machine).
"""

from __future__ import annotations

import threading

import pytest

import payments.services.recovery as recovery_module
from payera.events.models import Event
from payments.models import AS, PS, Payment, PaymentAttempt
from payments.services import payment_cancel, recovery_run
from payments.services.recovery import cancel_recover
from tests.payments.standin_alpha import authorized_at_standin

pytestmark = pytest.mark.django_db(transaction=True)


def _count(merchant, kind: str) -> int:
    return Event.objects.filter(merchant_id=merchant.id, type=kind).count()


def test_a_late_second_record_of_a_refused_void_leaves_the_next_cancel_under_way(psp_settings, settings, monkeypatch):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    with authorized_at_standin(settings, voids=("pending_then_failed", "pending")) as (merchant, psp, payment):
        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"  # void 1 pending at the PSP

        inquire = recovery_module.attempt_inquire
        slow = threading.current_thread()
        answered, go = threading.Event(), threading.Event()

        def held(attempt):  # the slow one's answer (void 1 refused) is held on its way back
            result = inquire(attempt)
            if threading.current_thread() is slow:
                answered.set()
                assert go.wait(30)
            return result

        monkeypatch.setattr(recovery_module, "attempt_inquire", held)
        outcome = {}

        def late():
            try:
                outcome["verdict"] = cancel_recover(payment_id=payment.id)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                outcome["error"] = exc
            finally:
                from django.db import connection

                connection.close()

        slow = threading.Thread(target=late)
        slow.start()
        try:
            assert answered.wait(30)
            # meanwhile the void's webhook (another worker) records the refusal first
            assert cancel_recover(payment_id=payment.id, release=False) == "refused"
            assert _count(merchant, "payment.cancel_failed") == 1
            assert PaymentAttempt.objects.get(payment_id=payment.id).void_number == 2
            # and the merchant cancels again: void 2, pending at the PSP
            assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
            assert Payment.objects.get(pk=payment.id).inflight == "cancel"
        finally:
            go.set()
            slow.join(30)
        assert "error" not in outcome, outcome

        # the late record of void 1's refusal is stale: the second cancel is still under way
        current = Payment.objects.get(pk=payment.id)
        assert (current.status, current.inflight) == (PS.REQUIRES_CAPTURE, "cancel")
        assert _count(merchant, "payment.cancel_failed") == 1
        assert PaymentAttempt.objects.get(payment_id=payment.id).void_number == 2

        psp.void_carry_out()  # void 2 done at the PSP
        recovery_run(force=True)
        current = Payment.objects.get(pk=payment.id)
        assert (current.status, current.inflight) == (PS.CANCELED, "")
        assert current.attempts.get().status == AS.VOIDED
        assert _count(merchant, "payment.canceled") == 1
        assert _count(merchant, "payment.cancel_failed") == 1
