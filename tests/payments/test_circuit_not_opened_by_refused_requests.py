"""The circuit breaker counts a PSP's technical failures, not requests it refused as invalid.

What was wrong: `_confirm_attempts` recorded a circuit failure for every attempt whose PSP call
surely did not process (verdict `unavailable`), including a 4xx refusal of the request itself
(`PspRequestRejectedError`: beta's 400 `unknown_bank` for a bank redirect naming a bank it does
not know). The circuit is one per connector for the whole platform, so one merchant sending five
such payments within a minute opened beta's circuit for 30 s and every other merchant's payments
routed beta-first went to their next connector (docs/payments.md: "5 technical failures in 60 s
open a connector"). Now only `PspUnavailableError` (connection refused, 5xx, 429, credentials
refused) and technical declines count; the refused payments still fail as before.

The beta sandbox is registered here under a connector name of its own, so that no test running
in parallel opens or closes its circuit (tests.helpers.close_circuits resets alpha and beta).
"""

from __future__ import annotations

import uuid

import pytest

from payera.secrets.services import secret_put
from payments.circuit import circuit_open_set, circuit_reset
from payments.models import PS
from payments.services import payment_create
from psp_adapters.registry import adapters_reset
from tests.helpers import free_port
from tests.merchants.factories import MerchantFactory

pytestmark = pytest.mark.django_db

CARD = {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
UNKNOWN_BANK = {"type": "bank_redirect", "bank_redirect": {"bank": "no_such_bank"}}


@pytest.fixture
def own_beta(psp_settings, settings):
    """`(name, use)`: the beta sandbox as a connector named for this test; `use(base_url)` points it
    elsewhere (a closed port)."""
    name = f"beta{uuid.uuid4().hex[:8]}"
    sandbox = psp_settings["beta"]
    secret_put(f"psp/{name}", {"api_key": sandbox.api_key, "webhook_secret": sandbox.webhook_secret})

    def use(base_url: str) -> None:
        conf = settings.PSP_CONNECTORS["beta"]
        settings.PSP_CONNECTORS = {
            **settings.PSP_CONNECTORS,
            name: {**conf, "OPTIONS": {**conf["OPTIONS"], "base_url": base_url}},
        }
        adapters_reset()

    use(sandbox.url)
    yield name, use
    circuit_reset([name])


def test_payments_the_psp_refuses_as_invalid_do_not_open_its_circuit_for_other_merchants(own_beta, settings):
    name, _ = own_beta
    sender = MerchantFactory(connectors=[name])
    for _ in range(settings.PAYMENTS_CIRCUIT_THRESHOLD + 1):
        refused = payment_create(merchant=sender, amount=1000, currency="EUR", payment_method_data=UNKNOWN_BANK)
        assert refused.status == PS.FAILED
        assert refused.attempts.get().status == "failed"
    assert circuit_open_set([name]) == frozenset()

    other = MerchantFactory(connectors=[name, "alpha"])
    payment = payment_create(merchant=other, amount=1000, currency="EUR", payment_method_data=CARD)
    assert [a.connector for a in payment.attempts.order_by("sequence")] == [name]


def test_an_unreachable_psp_still_opens_its_circuit(own_beta, settings):
    name, use = own_beta
    use(f"http://127.0.0.1:{free_port()}")  # connection refused: surely not processed
    merchant = MerchantFactory(connectors=[name])
    for _ in range(settings.PAYMENTS_CIRCUIT_THRESHOLD):
        payment = payment_create(merchant=merchant, amount=1000, currency="EUR", payment_method_data=CARD)
        assert payment.status == PS.FAILED
    assert circuit_open_set([name]) == frozenset({name})
