"""Crash injection (issue 6): a real subprocess runs a payment operation through the services
against the sandbox PSPs and is SIGKILLed at each step where a crash can happen; recovery must
end with exactly one operation at the PSP, the right final state and the ledger posted once.
The steps are listed in docs/recovery.md.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from django.db import connection

from ledger.selectors import balance_get
from ledger.verify import ledger_verify
from payments.models import AS, PS, Capture, OperationStatus, Payment, Refund
from payments.services import payment_create, recovery_run, refund_create
from tests.helpers import confirmed_booking
from tests.merchants.factories import MerchantFactory
from tests.psp_adapters.sandbox_fixtures import REPO_ROOT, connectors_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.scenario]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def fee(gross: int) -> int:
    return (gross * 290 + 5000) // 10000 + 30


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def crash(sandboxes, *, op: str, point: str, merchant, payment_id: str = "", amount: int | None = None,
          **extra) -> str:
    """Run the child; assert it died by SIGKILL (not by an error or a clean exit)."""
    cfg = {
        "database_url": _database_url(), "connectors": connectors_for(sandboxes),
        "credentials": {p: {"api_key": sb.api_key, "webhook_secret": sb.webhook_secret} for p, sb in sandboxes.items()},
        "op": op, "point": point, "merchant_id": str(merchant.pk), "payment_id": payment_id, "amount": amount,
        **extra,
    }
    proc = subprocess.run([sys.executable, "-m", "tests.scenarios.crash.child", json.dumps(cfg)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def pending_eur(merchant) -> int:
    return sum(m.amount for m in balance_get(owner=merchant.id).pending if m.currency == "EUR")


def recover_and_check(merchant, check) -> None:
    """Recovery resolves it; running recovery again changes nothing."""
    recovery_run(force=True)
    check()
    snapshot = pending_eur(merchant)
    recovery_run(force=True)
    check()
    assert pending_eur(merchant) == snapshot
    report = ledger_verify()
    assert report.ok, report.problems


@pytest.fixture
def crashable(psp_settings, settings):
    # the crashed process is gone: no grace period to wait out (production: 60 s)
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    return psp_settings


def the_payment(merchant) -> Payment:
    (payment,) = Payment.objects.filter(merchant=merchant)
    return payment


def test_crash_after_attempt_committed_before_authorize(crashable):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    crash(crashable, op="confirm", point="before_psp", merchant=merchant)
    payment = the_payment(merchant)
    (attempt,) = payment.attempts.all()
    assert payment.status == PS.PROCESSING and attempt.status == AS.STARTED and payment.inflight == "confirm"

    def check():
        p = Payment.objects.get(pk=payment.pk)
        assert p.status == PS.FAILED and p.inflight == ""
        assert [a.status for a in p.attempts.all()] == [AS.FAILED]
        assert crashable["alpha"].payments(attempt.id) == [] and crashable["beta"].payments(attempt.id) == []
        assert pending_eur(merchant) == 0

    recover_and_check(merchant, check)


def test_crash_after_psp_authorized_before_outcome_stored(crashable):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    out = crash(crashable, op="confirm", point="after_psp", merchant=merchant)
    assert "psp answered" in out
    payment = the_payment(merchant)
    (attempt,) = payment.attempts.all()
    assert payment.status == PS.PROCESSING and attempt.status == AS.STARTED
    assert len(crashable["alpha"].payments(attempt.id)) == 1  # the PSP did authorize (and capture)
    assert pending_eur(merchant) == 0

    def check():
        p = Payment.objects.get(pk=payment.pk)
        assert p.status == PS.SUCCEEDED and p.amount_captured == 1000 and p.inflight == ""
        assert [a.connector for a in p.attempts.all()] == ["alpha"]
        assert len(crashable["alpha"].payments(attempt.id)) == 1
        assert crashable["beta"].payments(attempt.id) == []
        assert pending_eur(merchant) == 1000 - fee(1000)

    recover_and_check(merchant, check)


def _manual_authorized(merchant) -> Payment:
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD,
                             capture_method="manual")
    assert payment.status == PS.REQUIRES_CAPTURE
    return payment


def test_crash_between_two_attempts_of_a_cascade(crashable):
    """What was wrong: a crash (or any error) after an attempt's soft decline was recorded and
    before the cascade's next attempt was committed left the payment `processing` with its
    `confirm` claim and no open attempt: recovery only asks the PSP about open attempts, so nothing
    ever settled it (the stuck sweeper flagged it for a human every 15 minutes, for ever). Now
    recovery ends such a confirmation: no PSP holds an open authorization of it, so the payment
    fails (`processing_error`; no other connector from recovery: the CVC is gone) and the claim is
    released; `attempt_start` refuses to begin an attempt for a payment whose confirmation has
    ended, so a slow request that comes back late sends nothing."""
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    crash(crashable, op="confirm", point="between_attempts", merchant=merchant, card="4000000000000119")
    payment = the_payment(merchant)
    (attempt,) = payment.attempts.all()
    assert attempt.connector == "alpha" and attempt.status == AS.DECLINED
    assert payment.status == PS.PROCESSING and payment.inflight == "confirm"

    def check():
        p = Payment.objects.get(pk=payment.pk)
        assert p.status == PS.FAILED and p.inflight == ""
        assert p.last_error["code"] == "processing_error"
        assert [(a.connector, a.status) for a in p.attempts.all()] == [("alpha", AS.DECLINED)]
        assert crashable["beta"].payments(attempt.id) == []
        assert pending_eur(merchant) == 0

    recover_and_check(merchant, check)


def test_a_late_cascade_sends_nothing_once_its_confirmation_has_ended(crashable):
    from payments.services.payments import attempt_start
    from payments.services.recovery import recovery_run

    merchant = MerchantFactory(connectors=["alpha", "beta"])
    crash(crashable, op="confirm", point="between_attempts", merchant=merchant, card="4000000000000119")
    payment = the_payment(merchant)
    recovery_run(force=True)
    assert attempt_start(payment_id=payment.pk, connector="beta") is None
    assert [a.connector for a in Payment.objects.get(pk=payment.pk).attempts.all()] == ["alpha"]


@pytest.mark.parametrize("point", ["before_psp", "after_psp"])
def test_crash_during_capture(crashable, point):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    payment = _manual_authorized(merchant)
    attempt = payment.attempts.get()
    crash(crashable, op="capture", point=point, merchant=merchant, payment_id=payment.id)
    (capture,) = Capture.objects.filter(payment=payment)
    assert capture.status == OperationStatus.PENDING
    assert Payment.objects.get(pk=payment.pk).inflight == "capture"
    captured_at_psp = 1 if point == "after_psp" else 0

    def captures_at_psp():
        (held,) = crashable["alpha"].payments(attempt.id)
        return [op for op in held["operations"] if op["kind"] == "capture"]

    assert len(captures_at_psp()) == captured_at_psp

    def check():
        p = Payment.objects.get(pk=payment.pk)
        c = Capture.objects.get(pk=capture.pk)
        assert p.inflight == ""  # a crashed capture's claim does not block the payment
        assert len(captures_at_psp()) == captured_at_psp
        if point == "after_psp":
            assert c.status == OperationStatus.SUCCEEDED
            assert p.status == PS.SUCCEEDED and p.amount_captured == 1000
            assert pending_eur(merchant) == 1000 - fee(1000)
        else:
            assert c.status == OperationStatus.FAILED
            assert p.status == PS.REQUIRES_CAPTURE and p.amount_captured == 0
            assert pending_eur(merchant) == 0

    recover_and_check(merchant, check)
    if point == "after_psp":  # at once, not after PAYMENTS_INFLIGHT_TIMEOUT
        assert refund_create(merchant=merchant, payment_id=payment.id, amount=100).status == OperationStatus.SUCCEEDED


@pytest.mark.parametrize("point", ["before_psp", "after_psp"])
def test_crash_during_refund(crashable, point):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    assert payment.status == PS.SUCCEEDED
    attempt = payment.attempts.get()
    before = pending_eur(merchant)
    crash(crashable, op="refund", point=point, merchant=merchant, payment_id=payment.id, amount=400)
    (refund,) = Refund.objects.filter(payment=payment)
    assert refund.status == OperationStatus.PENDING
    refunded_at_psp = 1 if point == "after_psp" else 0

    def refunds_at_psp():
        (held,) = crashable["alpha"].payments(attempt.id)
        return [op for op in held["operations"] if op["kind"] == "refund"]

    assert len(refunds_at_psp()) == refunded_at_psp

    def check():
        p = Payment.objects.get(pk=payment.pk)
        r = Refund.objects.get(pk=refund.pk)
        assert p.inflight == ""
        assert len(refunds_at_psp()) == refunded_at_psp
        if point == "after_psp":
            assert r.status == OperationStatus.SUCCEEDED and p.amount_refunded == 400
            # the refund returns its share of the fee: 59 * 400 / 1000, rounded down
            assert pending_eur(merchant) == before - 400 + fee(1000) * 400 // 1000
        else:
            assert r.status == OperationStatus.FAILED and p.amount_refunded == 0
            assert pending_eur(merchant) == before

    recover_and_check(merchant, check)


@pytest.mark.parametrize("point", ["before_psp", "after_psp"])
def test_crash_during_cancel(crashable, point):
    merchant = MerchantFactory(connectors=["alpha", "beta"])
    payment = _manual_authorized(merchant)
    attempt = payment.attempts.get()
    crash(crashable, op="cancel", point=point, merchant=merchant, payment_id=payment.id)
    p = Payment.objects.get(pk=payment.pk)
    assert p.status == PS.REQUIRES_CAPTURE and p.inflight == "cancel"
    voided_at_psp = point == "after_psp"

    def check():
        p = Payment.objects.get(pk=payment.pk)
        (held,) = crashable["alpha"].payments(attempt.id)
        assert (held["state"] == "voided") is voided_at_psp
        assert p.inflight == ""
        assert p.status == (PS.CANCELED if voided_at_psp else PS.REQUIRES_CAPTURE)
        assert pending_eur(merchant) == 0

    recover_and_check(merchant, check)


@pytest.mark.parametrize("point", ["before_refund", "before_psp", "after_psp"])
def test_crash_while_sending_an_approved_refund(crashable, point):
    """Four eyes: the second finance user's approval committed, then the process died before the
    refund was started, before the PSP call or after it. The resume (beat) sends it exactly once:
    never zero times when nothing went out, never a second refund when one did."""
    from payera.staff.access import staff_grant_merchant
    from payments.backoffice.models import RefundApproval
    from payments.backoffice.services import refund_approvals_resume, staff_refund_request
    from tests.backoffice.staff import make_staff

    merchant = MerchantFactory(connectors=["alpha", "beta"], refund_approval_threshold=0)
    requester, approver = make_staff("fin-ask", role="finance"), make_staff("fin-ok", role="finance")
    for user in (requester, approver):
        staff_grant_merchant(user=user, merchant_id=merchant.pk)
    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
    attempt = payment.attempts.get()
    before = pending_eur(merchant)
    approval = staff_refund_request(user=requester, payment_id=payment.id, amount=400, reason="goods returned").approval
    crash(crashable, op="approve", point=point, merchant=merchant, approval_id=approval.pk, user_id=approver.pk)

    def refunds_at_psp():
        (held,) = crashable["alpha"].payments(attempt.id)
        return [op for op in held["operations"] if op["kind"] == "refund"]

    approval.refresh_from_db()
    assert approval.status == "approved"
    assert (approval.refund_id is None) == (point == "before_refund")
    assert len(refunds_at_psp()) == (1 if point == "after_psp" else 0)

    def check():
        a = RefundApproval.objects.get(pk=approval.pk)
        refunds = list(Refund.objects.filter(payment=payment))
        reached_psp = point != "before_psp"  # a refund started but never sent fails (recovery asks the PSP)
        # sent with its refund; one that failed since ends the approval failed (at the next resume)
        assert a.status in (("sent",) if reached_psp else ("sent", "failed"))
        assert [r.pk for r in refunds] == [a.refund_id]
        assert len(refunds_at_psp()) == int(reached_psp)
        assert refunds[0].status == (OperationStatus.SUCCEEDED if reached_psp else OperationStatus.FAILED)
        refunded = 400 if reached_psp else 0
        assert Payment.objects.get(pk=payment.pk).amount_refunded == refunded
        assert pending_eur(merchant) == before - refunded + (fee(1000) * 400 // 1000 if reached_psp else 0)

    for _ in range(2):  # twice: the second run changes nothing
        assert refund_approvals_resume(grace_seconds=0)["approvals"] <= 1
        recover_and_check(merchant, check)
    assert refund_approvals_resume(grace_seconds=0)["approvals"] == 0
    assert RefundApproval.objects.get(pk=approval.pk).status == ("failed" if point == "before_psp" else "sent")


BOOKING = 10_000


def _confirmed_booking(merchant):
    return confirmed_booking(merchant, amount=BOOKING, reference="stay-crash")


def escrow_eur(merchant) -> int:
    return sum(m.amount for m in balance_get(owner=merchant.id).escrow if m.currency == "EUR")


def booking_event_types(booking_id: str) -> list[str]:
    from payera.events.models import Event

    return [e.type for e in Event.objects.filter(type__startswith="booking.").order_by("created_at", "id")
            if e.data["object"]["id"] == booking_id]


@pytest.mark.parametrize("op", ["booking_cancel", "booking_complete"])
@pytest.mark.parametrize("point", ["before_psp", "after_psp", "after_refund"])
def test_crash_during_a_booking_refund_out_of_escrow(crashable, op, point):
    """What was wrong: a confirmed booking's cancel (refund of the whole escrow) or partial
    completion (the rest refunded, then the escrow released) that died after its refund reached
    the PSP left the booking `confirmed`, its `cancel`/`complete` claim set, until the merchant
    happened to retry: recovery resolved the refund (the money back with the shopper, out of
    escrow) but nothing finished the booking, so the merchant was shown a confirmed booking (and
    for a completion, nothing released to its balance) that the shopper had been refunded for.
    Now recovery finishes it as the request would have ended: cancel -> `canceled`
    (`booking.canceled`), completion -> `completed` with the rest released (`booking.completed`),
    escrow at zero, once. A refund that never reached the PSP fails (recovery, 4a): the booking
    stays `confirmed`, its escrow whole, both claims released (the merchant may try again)."""
    from ledger.models import Journal
    from payments.models import Booking
    from payments.services.bookings import booking_cancel

    merchant = MerchantFactory(connectors=["alpha", "beta"])
    booking = _confirmed_booking(merchant)
    attempt = booking.payment.attempts.get(status=AS.CAPTURED)
    escrow = escrow_eur(merchant)
    assert escrow == BOOKING - fee(BOOKING)
    released = 6_000 if op == "booking_complete" else 0
    rest = BOOKING - released
    crash(crashable, op=op, point=point, merchant=merchant, booking_id=booking.id, amount=released or None)
    (refund,) = Refund.objects.filter(payment_id=booking.payment_id)
    b = Booking.objects.get(pk=booking.pk)
    assert b.status == "confirmed" and b.inflight == op.removeprefix("booking_")
    assert refund.amount == rest
    assert refund.status == (OperationStatus.SUCCEEDED if point == "after_refund" else OperationStatus.PENDING)
    reached_psp = point != "before_psp"

    def refunds_at_psp():
        (held,) = crashable["alpha"].payments(attempt.id)
        return [o for o in held["operations"] if o["kind"] == "refund"]

    def check():
        b = Booking.objects.get(pk=booking.pk)
        p = Payment.objects.get(pk=booking.payment_id)
        r = Refund.objects.get(pk=refund.pk)
        assert len(refunds_at_psp()) == int(reached_psp)
        assert b.inflight == "" and p.inflight == ""
        events = booking_event_types(booking.id)
        if not reached_psp:
            assert r.status == OperationStatus.FAILED
            assert (b.status, b.amount_refunded, b.amount_released) == ("confirmed", 0, 0)
            assert escrow_eur(merchant) == escrow and pending_eur(merchant) == 0
            assert events == ["booking.created", "booking.held", "booking.confirmed"]
            return
        assert r.status == OperationStatus.SUCCEEDED and p.amount_refunded == rest
        assert escrow_eur(merchant) == 0
        if op == "booking_cancel":
            assert (b.status, b.refund_id, b.amount_refunded, b.amount_released) == ("canceled", r.pk, BOOKING, 0)
            assert events == ["booking.created", "booking.held", "booking.confirmed", "booking.canceled"]
            assert pending_eur(merchant) == 0
            assert not Journal.objects.filter(reference=f"escrow_release:{booking.id}").exists()
        else:
            fee_back = fee(BOOKING) * rest // BOOKING
            assert (b.status, b.refund_id, b.amount_refunded) == ("completed", r.pk, rest)
            assert pending_eur(merchant) == b.amount_released == released - (fee(BOOKING) - fee_back)
            assert events == ["booking.created", "booking.held", "booking.confirmed", "booking.completed"]
            assert Journal.objects.filter(reference=f"escrow_release:{booking.id}").count() == 1

    recover_and_check(merchant, check)
    if not reached_psp:  # at once, not after PAYMENTS_INFLIGHT_TIMEOUT
        assert booking_cancel(merchant=merchant, booking_id=booking.id).status == "canceled"
        assert escrow_eur(merchant) == 0
