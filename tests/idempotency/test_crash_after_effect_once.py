"""One effect per Idempotency-Key for the POSTs that create or change something in a single
transaction: customers, webhook endpoints and the roll of an endpoint's signing secret.

The work commits, then the answer is lost (the database goes away, the process is killed) before
it is stored: the key's claim stays in flight until its lock times out and the retry takes it over.
Payments, refunds, bookings and subscriptions answered the object the first try made
(`IdempotencyKey.resource`, tests/idempotency/test_crash_after_effect.py); these three ran their
handler again: a second customer, a second endpoint (every event then delivered twice, under a
secret the merchant never saw) and a second roll (the merchant's working secret stopped signing at
once: the first roll's secret, never shown, became the "previous" one).
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

from payera.events.models import WebhookEndpoint
from payera.events.services import webhook_endpoint_create
from payera.events.services.endpoints import decrypt_secret, endpoint_signing_secret_ciphertexts
from payments.models import Customer
from tests.idempotency.test_crash_after_effect import lock_expires, lose_next_answer, post

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9/hook"


@pytest.fixture(autouse=True)
def _local_secrets(settings):
    settings.SECRETS_BACKEND = "local"


def test_customer_retry_after_a_crash_answers_the_first_customer(merchant_client, merchant, monkeypatch):
    body = {"email": "ada@example.com", "metadata": {"crm": "c-1"}}
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(merchant_client, "/v1/customers", body, "c-1")
    [first] = Customer.objects.filter(merchant=merchant)
    assert post(merchant_client, "/v1/customers", body, "c-1").status_code == 409  # its lock still runs
    lock_expires("c-1")
    retry = post(merchant_client, "/v1/customers", body, "c-1")
    assert retry.status_code == 201, retry.content
    assert retry.json()["id"] == first.id and retry.json()["email"] == "ada@example.com"
    assert Customer.objects.filter(merchant=merchant).count() == 1
    again = post(merchant_client, "/v1/customers", body, "c-1")  # from now on the stored answer
    assert again["Idempotent-Replayed"] == "true" and again.content == retry.content


def test_webhook_endpoint_retry_after_a_crash_answers_the_first_endpoint_and_its_secret(
    merchant_client, merchant, monkeypatch
):
    body = {"url": URL, "enabled_events": ["*"]}
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(merchant_client, "/v1/webhook_endpoints", body, "we-1")
    [first] = WebhookEndpoint.objects.filter(merchant_id=merchant.id)
    lock_expires("we-1")
    retry = post(merchant_client, "/v1/webhook_endpoints", body, "we-1")
    assert retry.status_code == 201, retry.content
    assert retry.json()["id"] == first.id
    assert WebhookEndpoint.objects.filter(merchant_id=merchant.id).count() == 1
    assert retry.json()["secret"] == decrypt_secret(first.secret_ciphertext)  # the one that signs
    again = post(merchant_client, "/v1/webhook_endpoints", body, "we-1")
    assert again["Idempotent-Replayed"] == "true" and again.content == retry.content


def test_roll_secret_retry_after_a_crash_rolls_once_and_the_old_secret_keeps_signing(
    merchant_client, merchant, monkeypatch
):
    created = webhook_endpoint_create(merchant_id=merchant.id, url=URL, enabled_events=["*"])
    old = created.secret
    url = f"/v1/webhook_endpoints/{created.endpoint.id}/roll_secret"
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(merchant_client, url, {"overlap_hours": 24}, "roll-1")
    lock_expires("roll-1")
    retry = post(merchant_client, url, {"overlap_hours": 24}, "roll-1")
    assert retry.status_code == 200, retry.content
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.id)
    signing = [decrypt_secret(c) for c in endpoint_signing_secret_ciphertexts(endpoint)]
    # the secret answered signs, and so does the one the merchant had during the overlap
    assert signing == [retry.json()["secret"], old]
    again = post(merchant_client, url, {"overlap_hours": 24}, "roll-1")
    assert again["Idempotent-Replayed"] == "true" and again.content == retry.content


def test_a_retry_that_can_not_show_the_first_endpoint_now_is_not_stored_and_the_next_one_answers_it(
    merchant_client, merchant, monkeypatch
):
    """The retry that takes over finds the endpoint but the secrets backend is down, so it can not
    show its secret: 503, and the key stays usable — the next retry answers the endpoint and its
    secret. (A 503 stored for the key would be replayed for 24 hours: the merchant could never get
    the secret of the endpoint this key made.)"""
    from payera.secrets.backends.base import SecretsUnavailableError

    body = {"url": URL, "enabled_events": ["*"]}
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(merchant_client, "/v1/webhook_endpoints", body, "we-2")
    [first] = WebhookEndpoint.objects.filter(merchant_id=merchant.id)
    lock_expires("we-2")

    def down(**kwargs):
        raise SecretsUnavailableError()

    with monkeypatch.context() as m:
        m.setattr("payera.secrets.services.decrypt", down)
        refused = post(merchant_client, "/v1/webhook_endpoints", body, "we-2")
    assert refused.status_code == 503, refused.content
    retry = post(merchant_client, "/v1/webhook_endpoints", body, "we-2")  # at once: no lock to wait for
    assert retry.status_code == 201, retry.content
    assert retry.json()["id"] == first.id and retry.json()["secret"] == decrypt_secret(first.secret_ciphertext)
    assert WebhookEndpoint.objects.filter(merchant_id=merchant.id).count() == 1


CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def alpha_client(psp_settings, merchant, merchant_client):
    merchant.connectors = ["alpha"]
    merchant.save()
    return merchant_client


def _authorized(client, key: str) -> str:
    made = post(client, "/v1/payments", {"amount": 900, "currency": "EUR", "payment_method_data": CARD,
                                         "capture_method": "manual"}, key)
    assert made.status_code == 201 and made.json()["status"] == "requires_capture", made.content
    return made.json()["id"]


@pytest.mark.parametrize(("action", "body", "status"), [
    ("capture", {}, "succeeded"),
    ("capture", {"amount_to_capture": 400}, "succeeded"),
    ("cancel", {}, "canceled"),
])
def test_a_payment_action_retried_after_a_crash_answers_the_payment_not_a_refusal(
    alpha_client, psp_settings, monkeypatch, action, body, status
):
    """POST /v1/payments/{id}/capture (or /cancel) captured at the PSP and committed, then its
    answer was lost. The retry with the key ran the handler again: 400 `payment_not_capturable`
    (or not cancelable) — and a 400 before any work releases the key, so every later retry said the
    same. The merchant's system read "capture failed" for a shopper who was charged. The retry now
    answers the payment as the first try left it (200), and nothing is sent to the PSP again."""
    from payments.models import Payment, PaymentAttempt

    payment_id = _authorized(alpha_client, f"pay-{action}")
    url = f"/v1/payments/{payment_id}/{action}"
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(alpha_client, url, body, f"{action}-1")
    assert Payment.objects.get(pk=payment_id).status == status  # done, its answer lost
    lock_expires(f"{action}-1")
    retry = post(alpha_client, url, body, f"{action}-1")
    assert retry.status_code == 200, retry.content
    assert retry.json()["id"] == payment_id and retry.json()["status"] == status
    [attempt] = PaymentAttempt.objects.filter(payment_id=payment_id)
    [at_psp] = psp_settings["alpha"].payments(attempt.id)
    assert len([op for op in at_psp["operations"] if op["kind"] in ("capture", "void")]) == 1
    again = post(alpha_client, url, body, f"{action}-1")
    assert again["Idempotent-Replayed"] == "true" and again.content == retry.content


def test_a_confirm_retried_after_a_crash_answers_the_payment_not_a_refusal(alpha_client, monkeypatch):
    from payments.models import Payment

    made = post(alpha_client, "/v1/payments", {"amount": 900, "currency": "EUR", "payment_method_data": CARD,
                                               "confirm": False}, "pay-confirm")
    payment_id = made.json()["id"]
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(alpha_client, f"/v1/payments/{payment_id}/confirm", {}, "confirm-1")
    assert Payment.objects.get(pk=payment_id).status == "succeeded"
    lock_expires("confirm-1")
    retry = post(alpha_client, f"/v1/payments/{payment_id}/confirm", {}, "confirm-1")
    assert retry.status_code == 200, retry.content
    assert retry.json()["status"] == "succeeded" and len(retry.json()["attempts"]) == 1


def _booking(client, key: str, *, confirmed: bool) -> str:
    import time

    made = post(client, "/v1/bookings", {"amount": 1200, "currency": "EUR", "payment_method_data": CARD,
                                         "reference": key, "hold_expires_at": int(time.time()) + 3600}, key)
    assert made.status_code == 201 and made.json()["status"] == "held", made.content
    if confirmed:
        done = post(client, f"/v1/bookings/{made.json()['id']}/confirm", {}, f"{key}-confirm")
        assert done.status_code == 200 and done.json()["status"] == "confirmed", done.content
    return made.json()["id"]


@pytest.mark.parametrize(("action", "confirmed", "body", "status"), [
    ("confirm", False, {}, "confirmed"),
    ("cancel", False, {}, "canceled"),
    ("complete", True, {}, "completed"),
    ("complete", True, {"amount": 700}, "completed"),
    ("cancel", True, {}, "canceled"),
])
def test_a_booking_action_retried_after_a_crash_answers_the_booking_not_a_refusal(
    alpha_client, monkeypatch, action, confirmed, body, status
):
    """As for payments: a booking confirmed (completed, canceled) whose answer was lost was refused
    on the retry with the key (400 `booking_state_invalid`, "cannot be confirmed"), the key
    released. The retry now answers the booking as the first try left it."""
    from payments.models import Booking, Refund

    booking_id = _booking(alpha_client, f"bk-{action}-{confirmed}-{len(body)}", confirmed=confirmed)
    url = f"/v1/bookings/{booking_id}/{action}"
    lose_next_answer(monkeypatch)
    with pytest.raises(OperationalError):
        post(alpha_client, url, body, f"{action}-b")
    assert Booking.objects.get(pk=booking_id).status == status  # done, its answer lost
    refunds = Refund.objects.count()
    lock_expires(f"{action}-b")
    retry = post(alpha_client, url, body, f"{action}-b")
    assert retry.status_code == 200, retry.content
    assert retry.json()["id"] == booking_id and retry.json()["status"] == status
    assert Refund.objects.count() == refunds
