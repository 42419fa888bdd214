"""An operation answer from alpha that cannot be read is an unknown outcome, never a 500.

What was wrong: alpha's adapter mapped an authorization answer it could not read to
`PspProtocolError` (the outcome is unknown: recovery asks), but its capture, void and refund
answers went through `_operation` unguarded: an answer missing a field raised `KeyError` out of
`payment_capture` / `refund_create` / `payment_cancel`, which only handle `PspError`. The merchant
got a 500 after the PSP may have captured or refunded, and the operation's request never recorded
its outcome: the payment's in-flight claim stayed held, so every other operation on the payment
was 409 `payment_in_progress` until the claim timed out (beta's adapter already wrapped these).
Now such an answer is a `PspProtocolError`: the capture (or refund) stays `pending`, the claim is
released, the request answers as for a timeout, and recovery's inquiry settles it.

The payment is authorized at the real alpha sandbox; only the capture call goes to a stand-in for
alpha (a PSP is outside the machine) that answers 201 with a truncated body.
"""

from __future__ import annotations

import pytest

from payments.models import PS, OperationStatus, Payment
from payments.services import payment_create, recovery_run
from tests.conftest import client_for
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory, make_api_key

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


@pytest.fixture
def truncated_alpha():
    """Answers every request 201 `{"status": "succeeded"}` (no ids, type or amount)."""
    with standin_psp(lambda method, path, body: (201, {"status": "succeeded"})) as (url, _):
        yield url


def test_an_unreadable_capture_answer_leaves_the_capture_pending_and_recovery_settles_it(
    psp_settings, settings, truncated_alpha
):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    merchant = MerchantFactory(connectors=["alpha"])
    client = client_for(make_api_key(merchant).secret)
    payment = payment_create(
        merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
    )
    assert payment.status == PS.REQUIRES_CAPTURE
    sandbox_url = settings.PSP_CONNECTORS["alpha"]["OPTIONS"]["base_url"]

    psp_at(settings, "alpha", truncated_alpha)
    r = client.post(f"/v1/payments/{payment.id}/capture", {}, format="json")
    assert r.status_code == 200, r.content  # as after a timeout: the outcome is asked for later
    assert r.json()["status"] == "requires_capture"
    payment = Payment.objects.get(pk=payment.id)
    assert payment.inflight == ""  # the claim is released: the payment is not blocked
    assert payment.captures.get().status == OperationStatus.PENDING

    psp_at(settings, "alpha", sandbox_url)  # recovery asks the real alpha, which never got that capture
    recovery_run(force=True)
    assert payment.captures.get().status == OperationStatus.FAILED
    r = client.post(f"/v1/payments/{payment.id}/capture", {}, format="json")
    assert r.status_code == 200, r.content
    assert (r.json()["status"], r.json()["amount_captured"]) == ("succeeded", 1000)
