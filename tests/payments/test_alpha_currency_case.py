"""Alpha answering its currency in lower case (`"eur"`).

ISO 4217 codes are case-insensitive and the port promises upper-case codes (psp_adapters/port.py),
but the alpha adapter passed the PSP's `currency` through as it came: an authorization answered
`"eur"` for our `EUR` was taken for a currency mismatch — the attempt `conflicted` and the payment
held `processing` for review (`amount_mismatch: requested 1000 EUR, alpha reported 1000 eur`); the
merchant saw a payment stuck in `processing` that the PSP had authorized, and operations a false
alarm. Captures, refunds and disputes carried the raw code too. Now the adapter answers upper case.

The PSP is a stand-in for alpha (its wire format) that answers every currency in lower case.
"""

from __future__ import annotations

import pytest

from payments.models import AS, PS, OperationStatus
from payments.services import payment_capture, payment_create
from tests.helpers import psp_at, standin_psp
from tests.merchants.factories import MerchantFactory
from tests.payments.standin_alpha import StandinAlpha

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


def test_a_lower_case_currency_answer_is_the_same_currency(psp_settings, settings):
    merchant = MerchantFactory(connectors=["alpha"])
    with standin_psp(StandinAlpha(currency_case="lower")) as (url, _):
        psp_at(settings, "alpha", url)
        payment = payment_create(
            merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
        )
        assert (payment.status, payment.review_reason) == (PS.REQUIRES_CAPTURE, "")
        attempt = payment.attempts.get()
        assert (attempt.status, attempt.currency) == (AS.AUTHORIZED, "EUR")

        payment = payment_capture(merchant=merchant, payment_id=payment.id)
        assert payment.status == PS.SUCCEEDED
        capture = payment.captures.get()
        assert (capture.status, capture.currency) == (OperationStatus.SUCCEEDED, "EUR")


def test_the_adapter_answers_upper_case_codes(psp_settings, settings):
    from psp_adapters.port import CaptureRequest, PspReference
    from psp_adapters.registry import get_adapter

    stand_in = StandinAlpha(currency_case="lower")
    with standin_psp(stand_in) as (url, _):
        psp_at(settings, "alpha", url)
        merchant = MerchantFactory(connectors=["alpha"])
        payment = payment_create(
            merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD, capture_method="manual"
        )
        attempt = payment.attempts.get()
        adapter = get_adapter("alpha")
        ref = PspReference(attempt.id, attempt.psp_reference)
        assert adapter.inquire(ref).currency == "EUR"
        op = adapter.capture(CaptureRequest(payment=ref, reference="cap_x", amount=500, currency="EUR"))
        assert op.currency == "EUR"
        assert {o.currency for o in adapter.inquire(ref).operations} == {"EUR"}
