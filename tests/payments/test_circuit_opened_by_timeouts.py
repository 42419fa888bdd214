"""A PSP that stops answering (timeouts) opens its circuit, as one that refuses connections does.

What was wrong: `_confirm_attempts` recorded a circuit failure only for a PSP that surely did not
process the request (`PspUnavailableError`) and for technical declines. A PSP that hangs — every
authorization sent to it times out — was never counted: each timeout leaves the payment
`processing` (an unknown outcome is never cascaded, rightly), so every new payment of every
merchant kept being sent to it first, waited for the adapter's read timeout and ended
`processing` until recovery, while a healthy second connector was never tried first. A timeout
is the most telling technical failure of all; now it counts too (PAYMENTS_CIRCUIT_THRESHOLD
within PAYMENTS_CIRCUIT_WINDOW), so new payments go to the healthy connector first while the
circuit is open. The timed-out payments themselves still never cascade (one authorization).

The alpha sandbox (its slow card holds the answer past the adapter's read timeout, real HTTP) is
registered under a connector name of its own, so that no test running in parallel sees its
circuit.
"""

from __future__ import annotations

import uuid

import pytest

from payera.secrets.services import secret_put
from payments.circuit import circuit_open_set, circuit_reset
from payments.models import AS, PS
from payments.services import payment_create
from psp_adapters.registry import adapters_reset
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db


def card(number: str) -> dict:
    return {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}


SLOW = card("4000000000007726")  # alpha holds its answer past the adapter's read timeout
GOOD = card("4242424242424242")


@pytest.fixture
def own_alpha(psp_settings, settings):
    name = f"alpha{uuid.uuid4().hex[:8]}"
    sandbox = psp_settings["alpha"]
    secret_put(f"psp/{name}", {"api_key": sandbox.api_key, "webhook_secret": sandbox.webhook_secret})
    settings.PSP_CONNECTORS = {**settings.PSP_CONNECTORS, name: settings.PSP_CONNECTORS["alpha"]}
    adapters_reset()
    yield name
    circuit_reset([name])


def test_timeouts_open_the_circuit_and_new_payments_go_to_the_healthy_connector_first(own_alpha, settings):
    settings.PAYMENTS_CIRCUIT_THRESHOLD = 2
    merchant = MerchantFactory(connectors=[own_alpha, "beta"])
    for _ in range(settings.PAYMENTS_CIRCUIT_THRESHOLD):
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=SLOW)
        # an unknown outcome: never another connector, the payment waits for recovery
        assert payment.status == PS.PROCESSING
        assert [(a.connector, a.status) for a in payment.attempts.all()] == [(own_alpha, AS.UNKNOWN)]
    assert circuit_open_set([own_alpha]) == frozenset({own_alpha})

    payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=GOOD)
    assert [a.connector for a in payment.attempts.order_by("sequence")] == ["beta"]
