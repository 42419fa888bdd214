"""Recovery's cancel step recording a capture the PSP made on its own (`cancel_recover`, session 20;
docs/decisions/booking-captured-while-expiring.md) while the PSP's webhooks about that capture and
about the refused void are processed at the same time, in real threads against PostgreSQL: one
capture, one capture journal, one `payment.captured`, one `payment.cancel_failed`; for a booking
whose expiry was voiding it, its escrow credited once, `booking.confirmed` once and its `expire`
claim ended. And a partial capture by the PSP (less than the hold) found the same way confirms the
booking for what was captured, which its completion then releases."""

from __future__ import annotations

import contextlib

import pytest

from ledger.models import Journal
from ledger.selectors import balance_get
from payera.events.models import Event
from payments.models import OperationStatus, Payment
from payments.services.recovery import cancel_recover
from payments.services.webhooks import psp_webhook_process
from tests.helpers import TEST_CARD, authorized_payment, psp_at, race, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha, alpha_webhook
from tests.payments.test_psp_initiated_capture import _assert_captured_once, _booking_expiring


def _escrow_eur(merchant) -> int:
    return sum(m.amount for m in balance_get(owner=merchant.id).escrow if m.currency == "EUR")


@contextlib.contextmanager
def _alpha_voids_pending(settings):
    """The stand-in alpha, answering voids pending; recovery's grace period 0. Yields (merchant, psp)."""
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha(voids=("pending",))
    with standin_psp(psp) as (url, _):
        psp_at(settings, "alpha", url)
        yield merchant, psp


def _race(*work) -> None:
    """Run each callable in its own thread, released together (tests.helpers.race)."""
    todo = list(work)
    race(len(todo), lambda: todo.pop()())


def _racers(secret: str, payment_id: str, auth: dict, run: int):
    """Recovery's cancel step, the authorization's webhook (captured) and the void's (refused)."""
    [void] = [o for o in auth["operations"] if o["type"] == "void"]
    cap = alpha_webhook(secret, f"evt_cap_{run}", "authorization.updated", auth).pk
    refused = alpha_webhook(secret, f"evt_void_{run}", "void.failed", void).pk
    return (
        lambda: cancel_recover(payment_id=payment_id),
        lambda: psp_webhook_process(webhook_id=cap),
        lambda: psp_webhook_process(webhook_id=refused),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_recovery_and_the_webhooks_record_a_psp_capture_under_a_cancel_once(psp_settings, settings, run):
    from payments.services.payments import payment_cancel

    with _alpha_voids_pending(settings) as (merchant, psp):
        payment = authorized_payment(merchant)
        payment_cancel(merchant=merchant, payment_id=payment.id)
        assert Payment.objects.get(pk=payment.id).inflight == "cancel"
        auth = psp.psp_capture(payment.attempts.get().id)

        _race(*_racers(psp_settings["alpha"].webhook_secret, payment.id, auth, run))
        _assert_captured_once(payment.id, merchant, 1000)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("payment.cancel_failed") == 1 and types.count("payment.succeeded") == 1
        assert "payment.canceled" not in types


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_recovery_and_the_webhooks_confirm_a_booking_captured_while_expiring_once(psp_settings, settings, run):
    from payments.models import Booking

    with _alpha_voids_pending(settings) as (merchant, psp):
        booking = _booking_expiring(merchant)
        auth = psp.psp_capture(booking.payment.attempts.get().id)

        _race(*_racers(psp_settings["alpha"].webhook_secret, booking.payment_id, auth, run))
        _assert_captured_once(booking.payment_id, merchant, 1000)
        booking = Booking.objects.select_related("payment").get(pk=booking.pk)
        assert (booking.status, booking.amount_captured, booking.inflight, booking.payment.inflight) == (
            "confirmed",
            1000,
            "",
            "",
        )
        capture = booking.payment.captures.get(status=OperationStatus.SUCCEEDED)
        assert _escrow_eur(merchant) == capture.amount - capture.fee  # credited once
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("payment.cancel_failed") == 1 and types.count("booking.confirmed") == 1
        assert "booking.expired" not in types


@pytest.mark.django_db
def test_a_partial_psp_capture_recovery_finds_while_a_booking_expires_confirms_what_was_captured(
    psp_settings, settings
):
    from payments.models import Booking
    from payments.services import recovery_run
    from payments.services.bookings import booking_complete

    with _alpha_voids_pending(settings) as (merchant, psp):
        booking = _booking_expiring(merchant)
        psp.psp_capture(booking.payment.attempts.get().id, amount=700)  # less than the hold

        assert recovery_run(force=True)["cancels"] == 1
        _assert_captured_once(booking.payment_id, merchant, 700)
        booking = Booking.objects.get(pk=booking.pk)
        assert (booking.status, booking.amount_captured, booking.inflight) == ("confirmed", 700, "")
        assert _escrow_eur(merchant) == 700 - booking.fee
        done = booking_complete(merchant=merchant, booking_id=booking.id)
        assert (done.status, done.amount_released) == ("completed", 700 - booking.fee)
        assert _escrow_eur(merchant) == 0
        assert Journal.objects.filter(reference__startswith="capture:").count() == 1


@pytest.mark.django_db
def test_a_psp_capture_recovery_finds_under_a_plain_cancel_is_recorded(psp_settings, settings):
    """Recovery's cancel step records the PSP's own capture for a plain payment too (not only a
    booking's expiry), with no webhook: captured once, the claim ended, the merchant told once."""
    from payments.services import recovery_run
    from payments.services.payments import payment_cancel

    with _alpha_voids_pending(settings) as (merchant, psp):
        payment = authorized_payment(merchant)
        payment_cancel(merchant=merchant, payment_id=payment.id)
        psp.psp_capture(payment.attempts.get().id)

        assert recovery_run(force=True)["cancels"] == 1
        _assert_captured_once(payment.id, merchant, 1000)
        assert Payment.objects.get(pk=payment.id).inflight == ""
        assert recovery_run(force=True)["cancels"] == 0
        assert Event.objects.filter(merchant_id=merchant.id, type="payment.cancel_failed").count() == 1


@pytest.mark.django_db
def test_an_expiry_whose_void_the_psp_refuses_for_its_own_capture_records_it(psp_settings, settings):
    """The PSP captured a booking's hold on its own before the expiry voided it, and its webhook is
    lost: the expiry's void is refused (409, captured). Nothing asked the PSP why, so every expiry
    tick (each minute) sent a new void of a captured authorization, the booking `held` and its
    money missing from escrow until reconciliation's settlement inquiry. The expiry now asks the
    PSP when its void is refused and records the capture it reports: the booking `confirmed`, its
    escrow credited, and no further void."""
    import datetime as dt

    from payments.models import Booking
    from payments.services.bookings import booking_create, booking_expire_due

    merchant = MerchantFactory(connectors=["alpha"])
    psp = StandinAlpha()
    with standin_psp(psp) as (url, seen):
        psp_at(settings, "alpha", url)
        booking = booking_create(
            merchant=merchant,
            amount=1000,
            currency="EUR",
            reference="captured-before-expiry",
            hold_expires_at=int(dt.datetime.now(dt.UTC).timestamp()) + 60,
            payment_method_data=TEST_CARD,
        )
        psp.psp_capture(booking.payment.attempts.get().id)  # no webhook reaches Payera

        for _ in range(2):  # two expiry ticks
            assert booking_expire_due(now_=booking.hold_expires_at + dt.timedelta(seconds=1)) == []
        _assert_captured_once(booking.payment_id, merchant, 1000)
        booking = Booking.objects.get(pk=booking.pk)
        assert (booking.status, booking.amount_captured, booking.inflight) == ("confirmed", 1000, "")
        assert _escrow_eur(merchant) == 1000 - booking.fee
        assert len(psp.void_references) == 1  # one void, refused: not sent again
        types = list(Event.objects.filter(merchant_id=merchant.id).values_list("type", flat=True))
        assert types.count("booking.confirmed") == 1 and "booking.expired" not in types
        assert types.count("payment.cancel_failed") == 1  # as when a webhook or recovery records it
