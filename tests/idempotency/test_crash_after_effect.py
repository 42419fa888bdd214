"""A request that crashes after its effect committed but before its answer was stored (found by
the load run, bench/load: PostgreSQL restarted between the refund and the stored answer). The
key's claim stays in flight until its lock times out; the retry that then takes it over must
answer the object the first try created, never create a second one (one effect per key)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.db import OperationalError
from django.utils import timezone

from payera.idempotency.models import IdempotencyKey
from payments.models import Payment, PaymentAttempt, Refund

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def client(psp_settings, api_key):
    api_key.api_key.merchant.connectors = ["alpha"]
    api_key.api_key.merchant.save()
    from tests.conftest import client_for

    return client_for(api_key.secret)


@pytest.fixture
def answer_lost_once(monkeypatch):
    lose_next_answer(monkeypatch)


def lose_next_answer(monkeypatch) -> None:
    """The next answer is never stored: the database goes away right after the work committed."""
    import payera.merchants.api.base as base

    real = base.idempotency_end
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(base, "idempotency_end", flaky)


def post(client, url, body, key):
    return client.post(url, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


def lock_expires(key: str) -> None:
    IdempotencyKey.objects.filter(key=key).update(locked_until=timezone.now() - dt.timedelta(seconds=1))


def test_refund_retry_after_a_crash_answers_the_first_refund(client, merchant, psp_settings, monkeypatch):
    pay = post(client, "/v1/payments", {"amount": 1000, "currency": "EUR", "payment_method_data": CARD}, "p-1")
    assert pay.status_code == 201 and pay.json()["status"] == "succeeded"
    lose_next_answer(monkeypatch)
    body = {"payment": pay.json()["id"], "amount": 300}
    with pytest.raises(OperationalError):
        post(client, "/v1/refunds", body, "r-1")
    [first] = Refund.objects.filter(payment_id=pay.json()["id"])
    assert post(client, "/v1/refunds", body, "r-1").status_code == 409  # its lock still runs
    lock_expires("r-1")
    retry = post(client, "/v1/refunds", body, "r-1")
    assert retry.status_code == 201
    assert retry.json()["id"] == first.id and retry.json()["status"] == "succeeded"
    assert Refund.objects.filter(payment_id=pay.json()["id"]).count() == 1
    attempt = PaymentAttempt.objects.get(payment_id=pay.json()["id"])
    [at_psp] = psp_settings["alpha"].payments(attempt.id)
    assert [op["reference"] for op in at_psp["operations"] if op["kind"] == "refund"] == [first.id]
    assert Payment.objects.get(pk=pay.json()["id"]).amount_refunded == 300
    again = post(client, "/v1/refunds", body, "r-1")  # and from now on the stored answer
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.id


def test_payment_retry_after_a_crash_answers_the_first_payment(client, merchant, psp_settings, answer_lost_once):
    body = {"amount": 1500, "currency": "EUR", "payment_method_data": CARD, "metadata": {"order": "o-1"}}
    with pytest.raises(OperationalError):
        post(client, "/v1/payments", body, "p-2")
    [first] = Payment.objects.filter(metadata__order="o-1")
    lock_expires("p-2")
    retry = post(client, "/v1/payments", body, "p-2")
    assert retry.status_code == 201
    assert retry.json()["id"] == first.id and retry.json()["status"] == "succeeded"
    assert Payment.objects.filter(metadata__order="o-1").count() == 1
    [attempt] = PaymentAttempt.objects.filter(payment=first)
    assert len(psp_settings["alpha"].payments(attempt.id)) == 1


def test_payment_crashed_before_its_psp_call_is_answered_again_never_created_twice(
    client, merchant, psp_settings, monkeypatch, settings
):
    """POST /v1/payments inserts the payment, its confirm claim and its first attempt in one
    transaction, committed before the PSP call. The process dies right after it: the retry that
    takes the key over answers that payment (never a second one, never a second PSP call), and
    recovery settles its `started` attempt by asking the PSP."""
    import payments.services.payments as services
    from payments.services import recovery_run

    real_attempts = services._confirm_attempts

    def crash(**kwargs):  # the process dies after the create transaction, before any PSP call
        monkeypatch.setattr(services, "_confirm_attempts", real_attempts)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_confirm_attempts", crash)
    body = {"amount": 700, "currency": "EUR", "payment_method_data": CARD, "metadata": {"order": "o-3"}}
    # the database went away after the insert: 503, and nothing stored for the key
    assert post(client, "/v1/payments", body, "p-3").status_code == 503
    [first] = Payment.objects.filter(metadata__order="o-3")
    assert first.status == "processing" and first.inflight == "confirm"
    assert list(first.attempts.values_list("status", flat=True)) == ["started"]
    lock_expires("p-3")
    retry = post(client, "/v1/payments", body, "p-3")
    assert retry.status_code == 201
    assert retry.json()["id"] == first.id and retry.json()["status"] == "processing"
    assert Payment.objects.filter(metadata__order="o-3").count() == 1
    assert PaymentAttempt.objects.filter(payment=first).count() == 1  # the retry called no PSP
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0  # the crashed request is known to be gone
    recovery_run(force=True)
    first.refresh_from_db()
    assert first.status == "failed" and not first.inflight  # the PSP never got the authorization


def test_payment_created_without_confirm_is_confirmed_by_a_retry_that_confirms(client, merchant, psp_settings):
    """`idempotent_resume` still confirms a payment left `requires_confirmation` by its request."""
    from payments.services import payment_create

    payment = payment_create(merchant=merchant, amount=700, currency="EUR", payment_method_data=CARD,
                             confirm=False, metadata={"order": "o-4"})
    key = IdempotencyKey.objects.create(merchant=merchant, key="p-4", fingerprint="x", method="POST",
                                        path="/v1/payments", owner=uuid.uuid4(), resource=payment.id,
                                        locked_until=timezone.now() - dt.timedelta(seconds=1))
    from payera.core.idempotency import fingerprint

    body = {"amount": 700, "currency": "EUR", "payment_method_data": CARD, "metadata": {"order": "o-4"}}
    key.fingerprint = fingerprint(method="POST", path="/v1/payments", body=json.dumps(body).encode())
    key.save()
    retry = post(client, "/v1/payments", body, "p-4")
    assert retry.status_code == 201
    assert retry.json()["id"] == payment.id and retry.json()["status"] == "succeeded"
    assert Payment.objects.filter(metadata__order="o-4").count() == 1


def test_booking_retry_after_a_crash_answers_the_first_booking(client, merchant, psp_settings, monkeypatch):
    """POST /v1/bookings creates a booking and its payment in one transaction: a retry after the
    answer was lost answers that booking — never a second hold on the shopper's card."""
    import time

    from payments.models import Booking

    body = {"amount": 1200, "currency": "EUR", "payment_method_data": CARD, "reference": "stay-crash",
            "hold_expires_at": int(time.time()) + 3600}
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(client, "/v1/bookings", body, "b-1")
    [first] = Booking.objects.filter(reference="stay-crash")
    lock_expires("b-1")
    retry = post(client, "/v1/bookings", body, "b-1")
    assert retry.status_code == 201, retry.content
    assert retry.json()["id"] == first.id and retry.json()["status"] == "held"
    assert Booking.objects.filter(reference="stay-crash").count() == 1
    assert Payment.objects.filter(merchant=first.merchant).count() == 1
    [attempt] = PaymentAttempt.objects.filter(payment_id=first.payment_id)
    assert len(psp_settings["alpha"].payments(attempt.id)) == 1
