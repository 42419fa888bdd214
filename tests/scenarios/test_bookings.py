"""Bookings (escrow), end to end over HTTP and the sandbox PSPs: every path of a booking, with the
merchant's escrow, pending and available balances exact after each step and the ledger verified.

Fee on a 100.00 EUR card capture (`standard`): 2.9 % + 0.30 = 3.20 EUR.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from ledger.models import Journal
from payera.events.models import Event
from payments.models import Booking, Refund
from payments.services import psp_webhook_process_due
from tests.scenarios.conftest import assert_ledger_sound, fee

pytestmark = [pytest.mark.scenario]

AMOUNT = 10000
FEE = fee(AMOUNT)  # 320


def card(number: str = "4242424242424242") -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def book(env, number: str = "4242424242424242", *, amount: int = AMOUNT, hold: float = 3600, expect: int = 201,
         headers: dict | None = None, **extra) -> dict:
    body = {"amount": amount, "currency": "EUR", "reference": "stay-42",
            "hold_expires_at": int(time.time() + hold), "payment_method_data": card(number), **extra}
    r = env.http.post("/v1/bookings", json=body, headers=headers or {})
    assert r.status_code == expect, r.text
    return r.json()


def get(env, booking_id: str) -> dict:
    r = env.http.get(f"/v1/bookings/{booking_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait(env, booking_id: str, status: str, timeout: float = 15.0) -> dict:
    """Play the worker (apply stored PSP webhooks) until the booking reaches `status`."""
    deadline = time.monotonic() + timeout
    while True:
        psp_webhook_process_due()
        b = get(env, booking_id)
        if b["status"] == status:
            return b
        assert time.monotonic() < deadline, f"booking never became {status}: {b}"
        time.sleep(0.1)


def balances(env) -> tuple[int, int, int]:
    """(pending, available, escrow) in EUR, as GET /v1/balance shows them."""
    b = env.balance()

    def eur(key: str) -> int:
        return sum(m["amount"] for m in b[key] if m["currency"] == "EUR")

    return eur("pending"), eur("available"), eur("escrow")


def types(env, booking_id: str) -> list[str]:
    return [e.type for e in Event.objects.filter(merchant_id=env.merchant.id, type__startswith="booking.").order_by(
        "created_at", "id") if e.data["object"]["id"] == booking_id]


def psp_state(env, booking: dict) -> dict:
    payment = env.get(booking["payment"])
    attempt = payment["attempts"][-1]
    [row] = env.sandboxes[attempt["connector"]].payments(attempt["id"])
    return row


def test_booking_held_confirmed_into_escrow_then_completed_to_pending(env):
    b = book(env)
    assert (b["object"], b["status"], b["amount"], b["currency"], b["reference"]) == (
        "booking", "held", AMOUNT, "EUR", "stay-42")
    payment = env.get(b["payment"])
    assert payment["status"] == "requires_capture" and payment["capture_method"] == "manual"
    assert balances(env) == (0, 0, 0)

    b = env.post(f"/v1/bookings/{b['id']}/confirm")
    assert b["status"] == "confirmed" and b["amount_captured"] == AMOUNT and b["fee"] == FEE
    assert b["amount_escrowed"] == AMOUNT - FEE
    assert balances(env) == (0, 0, AMOUNT - FEE)  # escrow, not pending
    assert env.get(b["payment"])["status"] == "succeeded"
    assert_ledger_sound()

    b = env.post(f"/v1/bookings/{b['id']}/complete")
    assert b["status"] == "completed" and b["amount_released"] == AMOUNT - FEE and b["amount_refunded"] == 0
    assert b["amount_escrowed"] == 0 and b["closed"] is not None
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    assert_ledger_sound()
    assert Journal.objects.filter(reference=f"escrow_release:{b['id']}").count() == 1
    assert types(env, b["id"]) == ["booking.created", "booking.held", "booking.confirmed", "booking.completed"]

    # completing again changes nothing
    r = env.http.post(f"/v1/bookings/{b['id']}/complete", json={})
    assert r.status_code == 400 and r.json()["error"]["code"] == "booking_unexpected_state"
    assert balances(env) == (AMOUNT - FEE, 0, 0)

    listed = env.http.get("/v1/bookings").json()
    assert listed["object"] == "list" and [x["id"] for x in listed["data"]] == [b["id"]]
    assert env.http.get("/v1/bookings", params={"status": "held"}).json()["data"] == []

    # after completion the money is the merchant's: a refund comes out of pending, like any payment's
    r = env.http.post("/v1/refunds", json={"payment": b["payment"], "amount": 1000})
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
    assert balances(env) == (AMOUNT - FEE - 1000 + FEE * 1000 // AMOUNT, 0, 0)
    assert_ledger_sound()


def test_cancel_before_confirm_voids_the_hold(env):
    b = book(env)
    b = env.post(f"/v1/bookings/{b['id']}/cancel")
    assert b["status"] == "canceled" and b["amount_refunded"] == 0
    assert env.get(b["payment"])["status"] == "canceled"
    assert psp_state(env, b)["state"] == "voided"
    assert balances(env) == (0, 0, 0)
    assert_ledger_sound()
    assert types(env, b["id"]) == ["booking.created", "booking.held", "booking.canceled"]
    r = env.http.post(f"/v1/bookings/{b['id']}/confirm")
    assert r.status_code == 400 and r.json()["error"]["code"] == "booking_unexpected_state"


def test_cancel_after_confirm_refunds_out_of_escrow_with_the_fee(env):
    b = book(env)
    env.post(f"/v1/bookings/{b['id']}/confirm")
    assert balances(env) == (0, 0, AMOUNT - FEE)
    b = env.post(f"/v1/bookings/{b['id']}/cancel")
    assert b["status"] == "canceled" and b["amount_refunded"] == AMOUNT and b["refund"]
    refund = Refund.objects.get(pk=b["refund"])
    assert refund.status == "succeeded" and refund.amount == AMOUNT
    # the refund came out of escrow (the whole fee with it), never out of pending
    assert balances(env) == (0, 0, 0)
    assert_ledger_sound()
    assert types(env, b["id"]) == ["booking.created", "booking.held", "booking.confirmed", "booking.canceled"]


def test_partial_completion_releases_part_and_refunds_the_rest(env):
    b = book(env)
    env.post(f"/v1/bookings/{b['id']}/confirm")
    r = env.http.post(f"/v1/bookings/{b['id']}/complete", json={"amount": AMOUNT + 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount"
    b = env.post(f"/v1/bookings/{b['id']}/complete", {"amount": 6000})
    fee_back = FEE * 4000 // AMOUNT  # 128: the refund's share of the fee
    released = 6000 - (FEE - fee_back)  # 5808: the completed part bears the rest of the fee
    assert (b["status"], b["amount_released"], b["amount_refunded"]) == ("completed", released, 4000)
    refund = Refund.objects.get(pk=b["refund"])
    assert (refund.status, refund.amount) == ("succeeded", 4000)
    assert balances(env) == (released, 0, 0)
    assert_ledger_sound()


def test_unconfirmed_hold_expires_and_is_voided_by_the_scheduler_command(env):
    b = book(env, hold=600)
    assert b["status"] == "held"
    call_command("run_booking_expiry")  # not due yet
    assert get(env, b["id"])["status"] == "held"
    # the hold's time passes (a hold of a second or two raced the request itself on a loaded host)
    Booking.objects.filter(pk=b["id"]).update(hold_expires_at=timezone.now() - dt.timedelta(seconds=1))
    call_command("run_booking_expiry")
    b = get(env, b["id"])
    assert b["status"] == "expired"
    assert env.get(b["payment"])["status"] == "canceled"
    assert psp_state(env, b)["state"] == "voided"
    r = env.http.post(f"/v1/bookings/{b['id']}/confirm")
    assert r.status_code == 400
    assert balances(env) == (0, 0, 0)
    assert_ledger_sound()
    assert types(env, b["id"]) == ["booking.created", "booking.held", "booking.expired"]


def test_3ds_card_waits_pending_then_is_held_and_completes(env):
    b = book(env, "4000000000003220")
    assert b["status"] == "pending"
    url = b["next_action"]["redirect_to_url"]["url"]
    answer = env.sandboxes["alpha"].submit_challenge(url, "pass")
    assert answer.status_code in (302, 303)
    b = wait(env, b["id"], "held")
    assert b["next_action"] is None
    env.post(f"/v1/bookings/{b['id']}/confirm")
    assert balances(env) == (0, 0, AMOUNT - FEE)
    env.post(f"/v1/bookings/{b['id']}/complete")
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    assert_ledger_sound()
    assert "booking.requires_action" in types(env, b["id"])


def test_declined_card_fails_the_booking(env):
    b = book(env, "4000000000000002")
    assert b["status"] == "failed"
    assert b["last_error"]["decline_code"] == "generic_decline"
    r = env.http.post(f"/v1/bookings/{b['id']}/confirm")
    assert r.status_code == 400
    assert balances(env) == (0, 0, 0)
    assert_ledger_sound()
    assert types(env, b["id"]) == ["booking.created", "booking.failed"]


def test_asynchronous_psp_booking_follows_its_webhooks(env):
    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    b = book(env)
    assert b["status"] == "pending"
    b = wait(env, b["id"], "held")
    b = env.post(f"/v1/bookings/{b['id']}/confirm")  # beta answers "received": the capture is pending
    b = wait(env, b["id"], "confirmed")
    assert balances(env) == (0, 0, AMOUNT - FEE)
    env.post(f"/v1/bookings/{b['id']}/complete")
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    assert_ledger_sound()


def test_confirm_again_while_the_asynchronous_capture_is_pending_answers_the_held_booking(env):
    """Beta answers a booking's capture "received": the confirm answers `held` and the booking is
    confirmed by the PSP's webhook. A merchant confirming again meanwhile (a retry of a timed-out
    request, or to see whether it went through) got 400 `payment_not_capturable` "This payment cannot
    be captured (it is not awaiting capture)" — about a payment it never touched, which *is* awaiting
    its capture. The confirm under way is the answer: 200 with the booking `held`, no second capture."""
    from payments.models import Capture

    env.merchant.connectors = ["beta"]
    env.merchant.save(update_fields=["connectors"])
    b = wait(env, book(env)["id"], "held")
    first = env.post(f"/v1/bookings/{b['id']}/confirm")
    assert first["status"] == "held"
    again = env.http.post(f"/v1/bookings/{b['id']}/confirm", json={})
    assert again.status_code == 200, again.text
    assert again.json()["status"] in ("held", "confirmed")
    assert Capture.objects.filter(payment_id=b["payment"]).count() == 1
    b = wait(env, b["id"], "confirmed")
    assert balances(env) == (0, 0, AMOUNT - FEE)
    r = env.http.post(f"/v1/bookings/{b['id']}/confirm", json={})  # once confirmed: as before
    assert r.status_code == 400 and r.json()["error"]["code"] == "booking_unexpected_state"
    assert_ledger_sound()


def test_a_bookings_payment_moves_only_through_the_booking(env):
    b = book(env)
    for path, body in ((f"/v1/payments/{b['payment']}/capture", {}), (f"/v1/payments/{b['payment']}/cancel", {})):
        r = env.http.post(path, json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "payment_belongs_to_booking", r.text
    env.post(f"/v1/bookings/{b['id']}/confirm")
    r = env.http.post("/v1/refunds", json={"payment": b["payment"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "payment_belongs_to_booking"
    assert balances(env) == (0, 0, AMOUNT - FEE)
    assert get(env, b["id"])["status"] == "confirmed"


def test_create_is_idempotent_and_validates_before_any_psp_call(env):
    key = {"Idempotency-Key": "book-once"}
    body = {"amount": AMOUNT, "currency": "eur", "reference": "r1", "hold_expires_at": int(time.time() + 600),
            "payment_method_data": card()}
    first = env.http.post("/v1/bookings", headers=key, json=body)
    assert first.status_code == 201
    again = env.http.post("/v1/bookings", headers=key, json=body)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert Booking.objects.filter(merchant_id=env.merchant.id).count() == 1
    for body, param in (
        ({"hold_expires_at": int(time.time() - 5)}, "hold_expires_at"),
        ({"hold_expires_at": int(time.time() + 8 * 86400)}, "hold_expires_at"),
        ({"hold_expires_at": "tomorrow"}, "hold_expires_at"),
        ({"reference": ""}, "reference"),
        ({"reference": "guest 4242 4242 4242 4242"}, "reference"),  # would land in events and the admin
        ({"payment_method_data": card("4242424242424241")}, None),  # Luhn
    ):
        full = {"amount": AMOUNT, "currency": "EUR", "reference": "r2", "hold_expires_at": int(time.time() + 600),
                "payment_method_data": card(), **body}
        r = env.http.post("/v1/bookings", json=full)
        assert r.status_code == 400, (body, r.text)
        if param:
            assert r.json()["error"]["param"] == param, r.text
    assert Booking.objects.filter(merchant_id=env.merchant.id).count() == 1


def test_settlement_makes_released_money_available_and_never_touches_escrow(env):
    import datetime as dt

    from django.utils import timezone

    from reconciliation.services.settlement import settlement_run

    done, held = book(env), book(env)
    env.post(f"/v1/bookings/{done['id']}/confirm")
    env.post(f"/v1/bookings/{done['id']}/complete")
    env.post(f"/v1/bookings/{held['id']}/confirm")
    assert balances(env) == (AMOUNT - FEE, 0, AMOUNT - FEE)
    later = timezone.now() + dt.timedelta(days=env.merchant.settlement_delay_days + 2)
    settlement_run(merchant_id=env.merchant.id, now=later)
    assert balances(env) == (0, AMOUNT - FEE, AMOUNT - FEE)  # the confirmed booking's money stays in escrow
    env.post(f"/v1/bookings/{held['id']}/cancel")
    assert balances(env) == (0, AMOUNT - FEE, 0)
    assert_ledger_sound()


@pytest.mark.parametrize("how", ["partial_completion", "cancel_after_confirm"])
def test_a_refund_out_of_escrow_failing_later_releases_its_money_to_pending(env, how):
    b = book(env, "4000000000005126")  # approved; any refund fails asynchronously
    env.post(f"/v1/bookings/{b['id']}/confirm")
    if how == "partial_completion":
        b = env.post(f"/v1/bookings/{b['id']}/complete", {"amount": 6000})
        assert b["status"] == "completed"
        fee_back = FEE * 4000 // AMOUNT
        assert balances(env) == (6000 - (FEE - fee_back), 0, 4000 - fee_back)
    else:
        b = env.post(f"/v1/bookings/{b['id']}/cancel")
        assert b["status"] == "canceled"
        assert balances(env) == (0, 0, AMOUNT - FEE)
    assert Refund.objects.get(pk=b["refund"]).status == "pending"
    deadline = time.monotonic() + 15
    while Refund.objects.get(pk=b["refund"]).status == "pending":
        assert time.monotonic() < deadline, "the refund's failure never arrived"
        time.sleep(0.1)
        psp_webhook_process_due()
    assert Refund.objects.get(pk=b["refund"]).status == "failed"
    b = get(env, b["id"])
    # nothing is left in escrow for a closed booking: the merchant holds it (and may refund again)
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    assert (b["amount_refunded"], b["amount_released"]) == (0, AMOUNT - FEE)
    assert_ledger_sound()
    assert "booking.refund_failed" in types(env, b["id"])
    r = env.http.post("/v1/refunds", json={"payment": b["payment"], "amount": 100})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("how", ["partial_completion", "cancel_after_confirm"])
def test_a_closed_bookings_escrow_refund_still_pending_is_shown_on_the_booking(env, how):
    """A booking closed (completed in part, or canceled after confirm) while its refund out of
    escrow is still pending at the PSP: the escrow still holds what that refund will take out
    (`GET /v1/balance` shows it), but the booking said `amount_escrowed: 0` (only `confirmed` counted),
    so the merchant could not tell which booking its escrow balance was for. The booking now shows
    it until the refund settles, and the bookings' escrow adds up to the balance."""
    b = book(env, "4000000000005126")  # approved; the refund stays pending, then fails
    env.post(f"/v1/bookings/{b['id']}/confirm")
    if how == "partial_completion":
        b = env.post(f"/v1/bookings/{b['id']}/complete", {"amount": 6000})
        assert b["status"] == "completed"
        held = 4000 - FEE * 4000 // AMOUNT
    else:
        b = env.post(f"/v1/bookings/{b['id']}/cancel")
        assert b["status"] == "canceled"
        held = AMOUNT - FEE
    assert Refund.objects.get(pk=b["refund"]).status == "pending"
    assert balances(env)[2] == held
    assert b["amount_escrowed"] == get(env, b["id"])["amount_escrowed"] == held
    listed = env.http.get("/v1/bookings").json()["data"]
    assert sum(x["amount_escrowed"] for x in listed) == balances(env)[2]


def test_a_saved_card_books_and_the_escrow_counts_beside_a_plain_payment(env):
    cus = env.post("/v1/customers", {"email": "guest@example.com"}, expect=201)["id"]
    p = env.pay("4242424242424242", amount=AMOUNT, customer=cus, setup_future_usage="off_session")
    pm = p["payment_method"]["id"]
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    r = env.http.post("/v1/bookings", json={"amount": AMOUNT, "currency": "EUR", "reference": "saved",
                                            "hold_expires_at": int(time.time()) + 600, "customer": cus,
                                            "payment_method": pm})
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["status"] == "held" and env.get(b["payment"])["payment_method"]["id"] == pm
    env.post(f"/v1/bookings/{b['id']}/confirm")
    assert balances(env) == (AMOUNT - FEE, 0, AMOUNT - FEE)
    other = env.post("/v1/customers", {"email": "other@example.com"}, expect=201)["id"]
    r = env.http.post("/v1/bookings", json={"amount": AMOUNT, "currency": "EUR", "reference": "saved",
                                            "hold_expires_at": int(time.time()) + 600, "customer": other,
                                            "payment_method": pm})
    assert r.status_code == 404 and r.json()["error"]["param"] == "payment_method"


def test_complete_with_the_same_idempotency_key_twice_releases_once(env):
    b = book(env)
    env.post(f"/v1/bookings/{b['id']}/confirm")
    key = {"Idempotency-Key": f"complete-{b['id']}"}
    first = env.http.post(f"/v1/bookings/{b['id']}/complete", json={"amount": 7000}, headers=key)
    again = env.http.post(f"/v1/bookings/{b['id']}/complete", json={"amount": 7000}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = env.http.post(f"/v1/bookings/{b['id']}/complete", json={"amount": 8000}, headers=key)
    assert other.status_code == 422 and other.json()["error"]["type"] == "idempotency_error"
    assert Journal.objects.filter(reference=f"escrow_release:{b['id']}").count() == 1
    assert Refund.objects.filter(payment_id=b["payment"]).count() == 1
    fee_back = FEE * 3000 // AMOUNT
    assert balances(env) == (7000 - (FEE - fee_back), 0, 0)
    assert_ledger_sound()


def _dispute_of(env, payment_id: str):
    from payments.models import Dispute

    deadline = time.monotonic() + 15
    while not Dispute.objects.filter(payment_id=payment_id).exists():
        assert time.monotonic() < deadline, "no dispute arrived"
        time.sleep(0.1)
        psp_webhook_process_due()
    return Dispute.objects.get(payment_id=payment_id)


def test_a_dispute_on_a_confirmed_booking_ends_its_escrow_and_takes_the_chargeback_from_pending(env):
    """Card 0259: a chargeback arrives after the booking's capture, while its money is in escrow.
    The escrow has done its job: its share (the capture less the fee) goes to pending, where the
    chargeback and its fee are taken as for any payment; the booking is canceled with its dispute
    (the merchant must not fulfil it), nothing stays in escrow for it, and a won dispute gives the
    chargeback back to pending."""
    chargeback_fee = 1500  # settings.PAYMENTS_CHARGEBACK_FEE["EUR"]
    b = book(env, "4000000000000259")
    env.post(f"/v1/bookings/{b['id']}/confirm")
    dispute = _dispute_of(env, b["payment"])
    b = get(env, b["id"])
    assert (b["status"], b["dispute"], b["amount_released"], b["amount_refunded"], b["refund"]) == (
        "canceled", dispute.id, AMOUNT - FEE, 0, None)
    assert balances(env) == (AMOUNT - FEE - AMOUNT - chargeback_fee, 0, 0)
    assert types(env, b["id"]) == ["booking.created", "booking.held", "booking.confirmed", "booking.canceled"]
    assert Journal.objects.filter(reference=f"escrow_release:{b['id']}").count() == 1
    assert_ledger_sound()
    for action in ("complete", "cancel"):
        r = env.http.post(f"/v1/bookings/{b['id']}/{action}", json={})
        assert r.status_code == 400 and r.json()["error"]["code"] == "booking_unexpected_state", r.text
    # the payment is the merchant's own now: the disputed money cannot be refunded again
    r = env.http.post("/v1/refunds", json={"payment": b["payment"], "amount": 100})
    assert r.status_code == 400 and r.json()["error"]["code"] == "amount_too_large", r.text
    assert balances(env) == (AMOUNT - FEE - AMOUNT - chargeback_fee, 0, 0)

    assert env.sandboxes[dispute.connector].close_dispute(dispute.psp_dispute_id, "won").status_code == 200
    deadline = time.monotonic() + 15
    while dispute.status != "won":  # the network's decision, by the sandbox's webhook
        assert time.monotonic() < deadline, f"dispute never won: {dispute.status}"
        time.sleep(0.1)
        psp_webhook_process_due()
        dispute.refresh_from_db()
    assert balances(env) == (AMOUNT - FEE, 0, 0)
    assert get(env, b["id"])["status"] == "canceled"
    assert_ledger_sound()


def test_a_dispute_landing_while_a_cancel_is_recording_releases_only_what_escrow_still_holds(env):
    """The cancel's refund out of escrow succeeded, the dispute arrives before the cancel records
    itself: the booking's escrow is already empty, so the dispute releases nothing (escrow never
    goes negative) and the cancel's late record leaves the booking as the dispute ended it."""
    from payments.models import PspWebhook
    from payments.services.bookings import _cancel_begin, _cancel_record, _escrow_refund

    chargeback_fee = 1500
    b = book(env, "4000000000000259")
    env.post(f"/v1/bookings/{b['id']}/confirm")
    deadline = time.monotonic() + 15
    while not PspWebhook.objects.filter(kind="dispute").exists():  # stored, not applied yet
        assert time.monotonic() < deadline, "no dispute webhook arrived"
        time.sleep(0.1)
    booking = _cancel_begin(merchant=env.merchant, booking_id=b["id"])
    refund = _escrow_refund(merchant=env.merchant, booking=booking, amount=AMOUNT, actor="api")
    assert refund.status == "succeeded" and balances(env) == (0, 0, 0)
    _dispute_of(env, b["payment"])  # the worker applies the dispute now
    _cancel_record(booking_id=b["id"], refund_id=refund.id, actor="api")
    b = get(env, b["id"])
    assert (b["status"], b["amount_released"], b["refund"]) == ("canceled", 0, None)
    assert b["dispute"]
    assert balances(env) == (-AMOUNT - chargeback_fee, 0, 0)
    assert not Journal.objects.filter(reference=f"escrow_release:{b['id']}").exists()
    assert_ledger_sound()
