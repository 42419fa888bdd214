"""A PSP's 409 `idempotency_conflict` is an unknown outcome, never a cascade (session 14).

The attempt id is our idempotency key at the PSP. A 409 `idempotency_conflict` says the PSP has
already seen that key with another request: the FIRST request may have been processed (here it
was: alpha captured it). It was mapped to `PspRequestRejectedError` ("nothing was processed"), so
the confirmation cascaded to beta, which charged the shopper a second time. Now it is
`PspIdempotencyConflictError` (`may_have_processed`): the attempt is `unknown`, the payment stays
`processing`, beta is never asked, and recovery's inquiry finds alpha's one capture.

Both sandboxes answer a reused reference with other parameters 409 `idempotency_conflict` over
real HTTP; the "earlier request" with our key is sent to the real alpha sandbox just before ours
(the adapter the service looks up is wrapped, as tests/scenarios/crash does — no PSP is mocked)."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.selectors import journal_list
from payments.models import AS, PS, Payment
from payments.services import payment_create, recovery_run
from tests.merchants.factories import MerchantFactory

pytestmark = [pytest.mark.django_db]

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


class _KeyUsedBefore:
    """Alpha, to which a request with OUR reference (idempotency key) but another description was
    sent before ours — as a previous process of ours whose answer was lost would have sent it."""

    def __init__(self, adapter):
        self._adapter = adapter

    def authorize(self, req):
        self._adapter.authorize(dataclasses.replace(req, description="an earlier request with this key"))
        return self._adapter.authorize(req)

    def __getattr__(self, name):
        return getattr(self._adapter, name)


def test_a_psp_idempotency_conflict_does_not_cascade_and_is_recovered_by_inquiry(psp_settings, settings,
                                                                                  monkeypatch):
    settings.PAYMENTS_STARTED_GRACE_SECONDS = 0
    from payments.services import payments as service

    real = service.get_adapter
    monkeypatch.setattr(service, "get_adapter",
                        lambda name: _KeyUsedBefore(real(name)) if name == "alpha" else real(name))
    merchant = MerchantFactory(connectors=["alpha", "beta"])

    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)

    attempts = list(Payment.objects.get(pk=payment.id).attempts.order_by("sequence").values_list(
        "connector", "status", "error"))
    held_at_beta = [p for a in Payment.objects.get(pk=payment.id).attempts.all()
                    for p in psp_settings["beta"].payments(a.id)]
    assert held_at_beta == [], f"cascaded to beta after alpha's 409: the shopper is charged twice ({attempts})"
    assert payment.status == PS.PROCESSING, attempts
    assert [(c, s) for c, s, _ in attempts] == [("alpha", AS.UNKNOWN)], attempts
    assert "psp_idempotency_conflict" in attempts[0][2]
    [held] = psp_settings["alpha"].payments(payment.attempts.get().id)  # the first request's

    monkeypatch.setattr(service, "get_adapter", real)
    recovery_run(force=True)
    payment = Payment.objects.get(pk=payment.id)
    assert (payment.status, payment.amount_captured) == (PS.SUCCEEDED, 1000), (payment.status, held)
    assert payment.attempts.get().status == AS.CAPTURED
    assert journal_list(owner=merchant.id).filter(reference__startswith="capture:").count() == 1
