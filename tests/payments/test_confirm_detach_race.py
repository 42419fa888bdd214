"""The detach/confirm race (session 14): a saved method detached — committed, by another connection
— after the confirmation committed its claim and attempt and before it read the card for the PSP.

`_confirm_begin` refuses a detached method under the payment's lock, but the detach locks the
method, not the payment: it can commit right after. The confirmation then decrypted the shredded
card (`ciphertext_invalid`, a 500) and left the payment `processing` with its claim and a `started`
attempt that no PSP ever received, for recovery to find "never arrived" a minute later. Now the
method is read, then checked, before the PSP call: detached → the attempt `failed`, the payment
`failed` (`last_error.code = "payment_method_detached"`, claim released) and the answer 400
`payment_method_detached`; nothing is sent to any PSP.

Staged deterministically on PostgreSQL with a real second connection: the service's commit step is
wrapped so that, once it has committed, a thread detaches the method (the real service, its own
transaction and the secrets backend's shred) and is joined before the confirmation goes on."""

from __future__ import annotations

import pytest
from django.db import connection

from payments.models import AS, PS, Payment
from payments.services import payment_create, payment_method_detach, recovery_run
from tests.helpers import race
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture(autouse=True)
def _postgres():
    if connection.vendor != "postgresql":
        pytest.skip("a second connection committing in between: PostgreSQL")


def _detach_after(monkeypatch, name: str, merchant, pm_id: str) -> None:
    """Wrap `payments.services.payments.<name>` (a committing step): the method is detached right
    after it committed."""
    from payments.services import payments as service

    real = getattr(service, name)

    def wrapped(**kwargs):
        out = real(**kwargs)
        # committed by another connection (its own thread) before the confirmation goes on
        race(1, lambda: payment_method_detach(merchant=merchant, payment_method_id=pm_id))
        return out

    monkeypatch.setattr(service, name, wrapped)


def _saved_card(make_merchant_client, **merchant_fields):
    merchant, client = make_merchant_client(connectors=["alpha"], **merchant_fields)
    cus = client.post("/v1/customers", {}, format="json").json()["id"]
    saving = client.post("/v1/payments", {"amount": 500, "currency": "EUR", "customer": cus,
                                          "setup_future_usage": "off_session", "payment_method_data": CARD},
                         format="json").json()  # fmt: skip
    assert saving["status"] == "succeeded", saving
    return merchant, client, cus, saving["payment_method"]["id"]


def _assert_failed_detached_nothing_sent(payment_id: str, psp_settings) -> None:
    payment = Payment.objects.get(pk=payment_id)
    attempts = list(payment.attempts.values_list("id", "status"))
    state = (payment.status, payment.inflight, [s for _, s in attempts])
    assert state == (PS.FAILED, "", [AS.FAILED]), state
    assert payment.last_error["code"] == "payment_method_detached", payment.last_error
    for att, _ in attempts:  # no PSP call for a detached method
        assert psp_settings["alpha"].payments(att) == [] and psp_settings["beta"].payments(att) == []
    assert recovery_run(force=True)["attempts"] == 0  # nothing left for recovery


def test_a_detach_committed_after_the_confirms_attempt_fails_it_with_400(make_merchant_client, psp_settings,
                                                                           monkeypatch, settings):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant, client, cus, pm = _saved_card(make_merchant_client)
    later = client.post("/v1/payments", {"amount": 700, "currency": "EUR", "customer": cus, "payment_method": pm,
                                         "confirm": False}, format="json")  # fmt: skip
    assert later.status_code == 201 and later.json()["status"] == "requires_confirmation", later.content
    pay_id = later.json()["id"]
    _detach_after(monkeypatch, "_confirm_begin", merchant, pm)

    response = client.post(f"/v1/payments/{pay_id}/confirm", {}, format="json", HTTP_IDEMPOTENCY_KEY="confirm-1")

    state = Payment.objects.filter(pk=pay_id).values_list("status", "inflight").get()
    assert response.status_code == 400, (response.status_code, response.content, state)
    assert response.json()["error"]["code"] == "payment_method_detached", response.content
    assert client.get(f"/v1/payments/{pay_id}").json()["status"] == "failed"
    _assert_failed_detached_nothing_sent(pay_id, psp_settings)
    # work began (the attempt and the payment's failure were written): the answer is stored for the key
    again = client.post(f"/v1/payments/{pay_id}/confirm", {}, format="json", HTTP_IDEMPOTENCY_KEY="confirm-1")
    assert (again.status_code, again.content) == (400, response.content)
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_an_off_session_charge_whose_method_is_detached_after_its_insert_fails_with_400(
        make_merchant_client, psp_settings, monkeypatch, settings):
    """The merchant-initiated path (subscriptions use it): the payment and its first attempt are
    inserted in one transaction (`_payment_insert`), the method detached right after."""
    from payera.core.errors import InvalidRequestError

    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant, _client, cus, pm = _saved_card(make_merchant_client)
    merchant = MerchantFactory._meta.model.objects.get(pk=merchant.pk)
    _detach_after(monkeypatch, "_payment_insert", merchant, pm)

    with pytest.raises(InvalidRequestError) as exc:
        payment_create(merchant=merchant, amount=900, currency="EUR", customer=cus, payment_method=pm,
                       off_session=True)
    assert exc.value.code == "payment_method_detached" and exc.value.http_status == 400
    [payment_id] = Payment.objects.filter(merchant=merchant, amount=900).values_list("pk", flat=True)
    _assert_failed_detached_nothing_sent(payment_id, psp_settings)
