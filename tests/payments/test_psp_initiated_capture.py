"""A capture the PSP made on its own (no capture request of ours) of an authorization Payera holds
`requires_capture`.

PSPs capture on their own: an account configured for delayed automatic capture, a capture made in
the PSP's dashboard, an issuer-side completion. They say so by webhook (the authorization is now
`captured`), by a capture event carrying their own operation id, and by the settlement report that
pays it out. Payera ignored all of it: the authorization event's "captured" was "handled by the
capture path" (there was none), a capture event with an operation id Payera never made was parked
and then failed, and reconciliation's settlement inquiry only looked at Payera's own captures. The
PSP held the shopper's money and paid it out; Payera showed the payment `requires_capture`, posted
no journal (the merchant's balance never saw the sale), told the merchant nothing, and the
authorization expiry later tried to void a captured payment.

Now the PSP's capture is recorded as a capture of the authorization (succeeded, the capture
journals, `payment.captured` / `payment.succeeded`) — once, whatever repeats: webhooks, inquiries,
and the merchant's own capture racing it (refused by the PSP, or by Payera once recorded).

The PSP is a stand-in for alpha (alpha's wire format; a PSP is outside the machine) whose
`psp_capture()` captures an authorization on its own.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from ledger.models import Journal
from payera.events.models import Event
from payments.models import AS, PS, InboxStatus, OperationStatus, Payment, PspWebhook
from payments.services import payment_capture
from payments.services.recovery import attempt_settlement_inquire
from payments.services.webhooks import psp_webhook_process
from tests.helpers import TEST_CARD, psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha, alpha_webhook, authorized_at_standin
from tests.scenarios.conftest import assert_ledger_sound


def _assert_captured_once(payment_id: str, merchant, amount: int) -> None:
    payment = Payment.objects.get(pk=payment_id)
    assert (payment.status, payment.amount_captured) == (PS.SUCCEEDED, amount)
    [capture] = payment.captures.filter(status=OperationStatus.SUCCEEDED)
    assert capture.amount == amount
    attempt = payment.attempts.get()
    assert attempt.status == AS.CAPTURED
    assert Journal.objects.filter(reference=f"capture:{attempt.id}").count() == 1
    assert Event.objects.filter(merchant_id=merchant.id, type="payment.captured").count() == 1
    assert_ledger_sound()


@pytest.mark.django_db
def test_a_psp_capture_reported_by_the_authorization_webhook_is_recorded_once(psp_settings, settings):
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings) as (merchant, psp, payment):
        auth = psp.psp_capture(payment.attempts.get().id, amount=700)  # partial, on its own

        row = alpha_webhook(secret, "evt_1", "authorization.updated", auth)
        psp_webhook_process(webhook_id=row.pk)
        _assert_captured_once(payment.id, merchant, 700)

        for n in (2, 3):  # the PSP sends it again (new event ids): nothing more
            psp_webhook_process(webhook_id=alpha_webhook(secret, f"evt_{n}", "authorization.updated", auth).pk)
        _assert_captured_once(payment.id, merchant, 700)


@pytest.mark.django_db
def test_a_psp_capture_event_with_the_psps_own_operation_id_is_recorded(psp_settings, settings):
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings) as (merchant, psp, payment):
        auth = psp.psp_capture(payment.attempts.get().id)
        [op] = auth["operations"]

        row = alpha_webhook(secret, "evt_op", "capture.succeeded", op)
        note = psp_webhook_process(webhook_id=row.pk)
        assert PspWebhook.objects.get(pk=row.pk).status == InboxStatus.PROCESSED, note
        _assert_captured_once(payment.id, merchant, 1000)


@pytest.mark.django_db
def test_a_psp_capture_found_by_the_settlement_inquiry_is_recorded_once(psp_settings, settings):
    with authorized_at_standin(settings) as (merchant, psp, payment):
        attempt = payment.attempts.get()
        psp.psp_capture(attempt.id)

        assert attempt_settlement_inquire(attempt_id=attempt.id)  # reconciliation: "missing in Payera"
        _assert_captured_once(payment.id, merchant, 1000)
        assert attempt_settlement_inquire(attempt_id=attempt.id)
        _assert_captured_once(payment.id, merchant, 1000)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_the_merchants_capture_racing_the_psps_own_captures_once(psp_settings, settings, run):
    """Our capture request and the PSP's webhook at the same time, in two threads: one capture, one
    journal, whichever wins. The PSP refuses our capture (already captured); a webhook that met our
    capture under way is asked again later (parked) and then records the PSP's."""
    from django.db import connection

    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings) as (merchant, psp, payment):
        auth = psp.psp_capture(payment.attempts.get().id)
        row = alpha_webhook(secret, f"evt_race_{run}", "authorization.updated", auth)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def ours() -> None:
            try:
                barrier.wait()
                payment_capture(merchant=merchant, payment_id=payment.id)
            except Exception as exc:  # noqa: BLE001 - refused either way: by the PSP or by Payera
                errors.append(exc)
            finally:
                connection.close()

        def theirs() -> None:
            try:
                barrier.wait()
                psp_webhook_process(webhook_id=row.pk)
            finally:
                connection.close()

        threads = [threading.Thread(target=ours), threading.Thread(target=theirs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(errors) == 1, errors  # the merchant's capture is refused: it was captured already
        # a parked webhook is asked again later
        PspWebhook.objects.filter(pk=row.pk).update(next_try_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        psp_webhook_process(webhook_id=row.pk)
        _assert_captured_once(payment.id, merchant, 1000)


@pytest.mark.django_db
def test_a_psp_capture_while_a_cancel_is_under_way_ends_the_cancel(psp_settings, settings):
    """A cancel under way (its void pending at the PSP, the `cancel` claim held) when the PSP reports
    it captured the authorization on its own: the capture happened, so the cancel can no longer
    succeed. The claim is resolved with the capture (the merchant told `payment.cancel_failed`,
    once): the payment is usable at once (a refund is not 409 until recovery's cancel step), and
    the void's own late outcome (refused) is stale news."""
    from payments.services import recovery_run, refund_create
    from payments.services.payments import payment_cancel

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    secret = psp_settings["alpha"].webhook_secret
    with authorized_at_standin(settings, voids=("pending",)) as (merchant, psp, payment):
        assert payment_cancel(merchant=merchant, payment_id=payment.id).status == PS.REQUIRES_CAPTURE
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"

        auth = psp.psp_capture(payment.attempts.get().id)  # the pending void is refused by it
        psp_webhook_process(webhook_id=alpha_webhook(secret, "evt_cap", "authorization.updated", auth).pk)
        _assert_captured_once(payment.id, merchant, 1000)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("payment.cancel_failed") == 1 and "payment.canceled" not in types

        refund = refund_create(merchant=merchant, payment_id=payment.id, amount=400)
        assert refund.status == OperationStatus.SUCCEEDED

        [void] = [o for o in auth["operations"] if o["type"] == "void"]
        row = alpha_webhook(secret, "evt_void", "void.failed", void)
        note = psp_webhook_process(webhook_id=row.pk)
        assert PspWebhook.objects.get(pk=row.pk).status == InboxStatus.PROCESSED, note
        assert recovery_run(force=True)["cancels"] == 0
        assert Event.objects.filter(merchant_id=merchant.id, type="payment.cancel_failed").count() == 1
        assert Payment.objects.get(pk=payment.id).status == PS.SUCCEEDED
        assert_ledger_sound()


def _booking_expiring(merchant):
    """A booking held through the stand-in, past its hold, whose expiry's void is pending at the
    PSP (both claims held: the booking's `expire`, the payment's `cancel`); answered fresh."""
    from payments.services.bookings import booking_create, booking_expire_due

    booking = booking_create(merchant=merchant, amount=1000, currency="EUR", reference="expiring",
                             hold_expires_at=int(dt.datetime.now(dt.UTC).timestamp()) + 60,
                             payment_method_data=TEST_CARD)
    assert booking.status == "held"
    assert booking_expire_due(now_=booking.hold_expires_at + dt.timedelta(seconds=1)) == []  # void pending
    booking.refresh_from_db()
    assert (booking.status, booking.inflight, booking.payment.inflight) == ("held", "expire", "cancel")
    return booking


@pytest.mark.django_db
def test_a_psp_capture_while_a_booking_expiry_voids_it_ends_the_expiry_claim(psp_settings, settings):
    """A booking's hold expires and the expiry's void is under way (pending at the PSP: the payment
    keeps its `cancel` claim and the booking its `expire` claim, so that the cancel recovery records
    later is the expiry's) when the PSP reports it captured the authorization on its own. The money
    was captured into escrow: the booking is `confirmed` (held -> confirmed, as any capture of its
    hold; docs/decisions/booking-captured-while-expiring.md) and the payment's claim ends with the
    capture (`payment.cancel_failed`, once). The booking's `expire` claim stayed until
    PAYMENTS_INFLIGHT_TIMEOUT: the merchant could neither complete nor cancel the booking meanwhile
    (409 booking_in_progress). It now ends with the capture too."""
    from payments.models import Booking
    from payments.services.bookings import booking_complete

    secret = psp_settings["alpha"].webhook_secret
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(voids=("pending",))
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        booking = _booking_expiring(merchant)
        auth = psp.psp_capture(booking.payment.attempts.get().id)  # the pending void is refused by it
        psp_webhook_process(webhook_id=alpha_webhook(secret, "evt_bk_cap", "authorization.updated", auth).pk)
        _assert_captured_once(booking.payment_id, merchant, 1000)
        booking.refresh_from_db()
        assert (booking.status, booking.amount_captured) == ("confirmed", 1000)
        assert (booking.inflight, booking.inflight_at, booking.payment.inflight) == ("", None, "")
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("payment.cancel_failed") == 1 and types.count("booking.confirmed") == 1
        assert "booking.expired" not in types and "booking.canceled" not in types

        # the merchant completes it at once (not 409 until the claim times out)
        assert booking_complete(merchant=merchant, booking_id=booking.id).status == "completed"
        assert Booking.objects.get(pk=booking.id).inflight == ""
        assert_ledger_sound()


@pytest.mark.django_db
def test_a_psp_capture_that_recovery_finds_while_a_booking_expiry_voids_it_confirms_the_booking(
    psp_settings, settings
):
    """The same, with no webhook: recovery's cancel step asks the PSP about the void under way and
    hears the authorization is captured (the void refused by it). It released the payment's claim
    (`payment.cancel_failed`) but did not record the capture: the payment stayed
    `requires_capture`, the booking `held` with its `expire` claim, and the next expiry tick past
    the claim's timeout voided a captured authorization again. The capture the inquiry reports is
    now recorded there (as the settlement inquiry does), ending both claims, the merchant told
    once."""
    from payments.services import recovery_run

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(voids=("pending",))
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        booking = _booking_expiring(merchant)
        psp.psp_capture(booking.payment.attempts.get().id)

        assert recovery_run(force=True)["cancels"] == 1
        _assert_captured_once(booking.payment_id, merchant, 1000)
        booking.refresh_from_db()
        assert (booking.status, booking.inflight, booking.payment.inflight) == ("confirmed", "", "")
        assert recovery_run(force=True)["cancels"] == 0
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("payment.cancel_failed") == 1 and types.count("booking.confirmed") == 1
        assert "booking.expired" not in types
