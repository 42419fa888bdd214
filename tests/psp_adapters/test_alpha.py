"""alpha: the contract plus what only alpha does (synchronous answers, the timeout card)."""

from __future__ import annotations

import time

import pytest

from psp_adapters.errors import PaymentMethodUnsupportedError, PspTimeoutError
from psp_adapters.port import (
    AuthorizeRequest,
    DeclineClass,
    DeclineCode,
    Outcome,
    PspReference,
    PspState,
    SepaDebitData,
)
from tests.psp_adapters.contract import PspAdapterContract, card, ref


class TestAlphaContract(PspAdapterContract):
    connector = "alpha"

    def test_processing_error_card_is_a_soft_decline(self, adapter):
        r = self.authorize(adapter, "4000000000000119")
        assert r.outcome == Outcome.SOFT_DECLINED
        assert r.decline.code == DeclineCode.PROCESSING_ERROR
        assert r.decline.decline_class in (DeclineClass.SOFT, DeclineClass.TECHNICAL)
        assert r.decline.may_cascade

    def test_timeout_card_is_unknown_then_inquiry_says_authorized(self, adapter):
        reference = ref()
        started = time.monotonic()
        with pytest.raises(PspTimeoutError) as exc:
            self.authorize(adapter, "4000000000007726", reference=reference)
        assert exc.value.may_have_processed is True
        assert time.monotonic() - started < 3.0  # the adapter's read timeout, not the sandbox's hold
        found = adapter.inquire(PspReference(reference))
        assert found.outcome == Outcome.APPROVED and found.state == PspState.AUTHORIZED
        # a retry with the same reference gets that authorization back, never a second one
        again = self.authorize(adapter, "4000000000007726", reference=reference)
        assert again.payment == found.payment

    def test_answers_are_synchronous(self, adapter):
        assert self.authorize(adapter).outcome == Outcome.APPROVED

    def test_alpha_takes_no_sepa(self, adapter):
        assert not adapter.capabilities.supports("sepa_debit", "EUR")
        req = AuthorizeRequest(
            reference=ref(),
            amount=100,
            currency="EUR",
            payment_method=SepaDebitData(iban="DE89370400440532013000", account_holder_name="A"),
        )
        with pytest.raises(PaymentMethodUnsupportedError):
            adapter.authorize(req)

    def test_state_survives_a_sandbox_restart(self, adapter, sandboxes):
        r = self.authorize(adapter, capture=True, payment_method=card())
        sandboxes["alpha"].restart()
        found = adapter.inquire(PspReference(r.payment.reference))
        assert found.payment == r.payment and found.state == PspState.CAPTURED


@pytest.mark.django_db(databases=[])
def test_reset_forgets_everything(psp_settings):
    from psp_adapters.registry import get_adapter

    sandbox = psp_settings["alpha"]
    reference = ref()
    get_adapter("alpha").authorize(
        AuthorizeRequest(reference=reference, amount=100, currency="EUR", payment_method=card())
    )
    assert len(sandbox.payments(reference)) == 1
    sandbox.reset()
    assert sandbox.payments() == [] and sandbox.events() == []


@pytest.mark.django_db
def test_psp_settings_works_with_the_base_settings_secrets_backend(settings, request):
    from psp_adapters.registry import get_adapter

    settings.SECRETS_BACKEND = "local"  # as in base settings (it keeps secrets in the database)
    request.getfixturevalue("psp_settings")
    r = get_adapter("alpha").authorize(
        AuthorizeRequest(reference=ref(), amount=100, currency="EUR", payment_method=card())
    )
    assert r.outcome == Outcome.APPROVED
