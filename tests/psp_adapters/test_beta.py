"""beta: the contract plus what only beta does (asynchronous outcomes by webhook, bank
redirect, SEPA Direct Debit)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from psp_adapters.errors import PspRequestRejectedError
from psp_adapters.port import (
    BankRedirectData,
    DeclineCode,
    DisputeReason,
    DisputeStatus,
    Outcome,
    PspEventKind,
    PspReference,
    PspState,
    SepaDebitData,
)
from tests.psp_adapters.contract import PspAdapterContract, ref


class TestBetaContract(PspAdapterContract):
    connector = "beta"

    def test_authorize_answers_received_then_a_signed_webhook_brings_the_outcome(self, adapter, psp_webhooks):
        r = self.authorize(adapter)
        assert r.outcome == Outcome.PENDING and r.state == PspState.PENDING
        assert r.payment.psp_reference
        hook = psp_webhooks.wait_for(
            lambda h: h.path == "/beta" and h.json()["merchantReference"] == r.payment.reference
        )
        assert hook.headers["Beta-Signature"].startswith("ts=")
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.kind == PspEventKind.AUTHORIZATION
        assert event.outcome == Outcome.APPROVED
        assert event.payment == r.payment
        assert (event.amount, event.currency) == (1000, "EUR")

    def test_declines_arrive_by_webhook(self, adapter, psp_webhooks):
        r = self.authorize(adapter, "4000000000009995")
        assert r.outcome == Outcome.PENDING
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.outcome == Outcome.DECLINED
        assert event.decline.code == DeclineCode.INSUFFICIENT_FUNDS

    @pytest.mark.parametrize("number", ["4000000000000119", "4000000000007726"])
    def test_cards_alpha_fails_on_are_approved(self, adapter, number):
        self.approved(adapter, number)

    def test_stale_webhook_signature_is_rejected(self, adapter, psp_webhooks):
        from psp_adapters.beta import webhooks
        from psp_adapters.errors import WebhookSignatureError

        r = self.authorize(adapter)
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        secret = adapter._webhook_secrets[0]
        old = webhooks.sign(hook.body, secret, ts=1_000_000_000)
        with pytest.raises(WebhookSignatureError):
            adapter.parse_webhook(body=hook.body, headers={"Beta-Signature": old})

    def test_webhooks_are_retried_until_delivered(self, adapter, psp_webhooks, sandboxes):
        reference = ref()
        psp_webhooks.fail_next(2, match=reference)
        r = self.authorize(adapter, reference=reference)
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        event_id = hook.json()["eventId"]
        attempts = [a for a in psp_webhooks.attempts if a.json().get("eventId") == event_id]
        assert len(attempts) == 3  # two failed, then the successful delivery
        sent = {e["id"]: e for e in sandboxes["beta"].events()}
        assert sent[event_id]["delivered_at"] is not None

    def test_an_event_can_be_delivered_again(self, adapter, psp_webhooks, sandboxes):
        r = self.authorize(adapter)
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        event_id = hook.json()["eventId"]
        sandboxes["beta"].resend(event_id)
        deadline = 50
        while deadline and len([h for h in psp_webhooks.received if h.json().get("eventId") == event_id]) < 2:
            deadline -= 1
            time.sleep(0.1)
        copies = [h for h in psp_webhooks.received if h.json().get("eventId") == event_id]
        assert len(copies) == 2 and copies[0].body == copies[1].body
        assert adapter.parse_webhook(body=copies[1].body, headers=copies[1].headers).event_id == event_id

    # --- bank redirect ----------------------------------------------------------------
    @pytest.mark.parametrize("result, outcome", [("pass", Outcome.APPROVED), ("fail", Outcome.DECLINED)])
    def test_bank_redirect(self, adapter, sandboxes, psp_webhooks, result, outcome):
        return_url = "https://shop.example/back"
        r = self.authorize(adapter, payment_method=BankRedirectData(bank="sandbox_bank"), return_url=return_url)
        assert r.outcome == Outcome.REQUIRES_ACTION and "/bank/" in r.action.redirect_url
        response = sandboxes["beta"].submit_challenge(r.action.redirect_url, result)
        assert response.status_code == 303 and response.headers["location"].startswith(return_url)
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.outcome == outcome
        done = adapter.complete_authentication(r.payment)
        assert done.outcome == outcome
        if outcome == Outcome.APPROVED:
            assert done.state == PspState.CAPTURED and event.amount_captured == 1000

    # --- SEPA Direct Debit --------------------------------------------------------------
    def sepa(self, adapter, iban: str, **kwargs):
        return self.authorize(
            adapter, payment_method=SepaDebitData(iban=iban, account_holder_name="Ada Lovelace"), **kwargs
        )

    def test_sepa_debit_succeeds_by_webhook(self, adapter, psp_webhooks):
        r = self.sepa(adapter, "DE89370400440532013000")
        assert r.outcome == Outcome.PENDING
        hook = psp_webhooks.wait_for(lambda h: h.json().get("merchantReference") == r.payment.reference)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.outcome == Outcome.APPROVED and event.amount_captured == 1000
        assert adapter.inquire(r.payment).state == PspState.CAPTURED

    def test_sepa_debit_fails_insufficient_funds(self, adapter):
        r = self.settled(adapter, self.sepa(adapter, "AT611904300234573201"))
        assert r.outcome == Outcome.DECLINED and r.decline.code == DeclineCode.INSUFFICIENT_FUNDS

    def test_sepa_debit_returned_after_success(self, adapter, psp_webhooks):
        r = self.settled(adapter, self.sepa(adapter, "NL39RABO0300065264"))
        assert r.outcome == Outcome.APPROVED

        def returned(h):
            body = h.json()
            return body.get("paymentReference") == r.payment.reference and body.get("eventCode") == "CHARGEBACK"

        hook = psp_webhooks.wait_for(returned)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.kind == PspEventKind.DISPUTE
        assert event.dispute.reason == DisputeReason.DEBIT_RETURNED
        assert (event.amount, event.currency) == (1000, "EUR")

    def test_a_sepa_unauthorised_claim_opens_needs_response_and_a_return_opens_lost(self, adapter, sandboxes,
                                                                                   psp_webhooks):
        """The sandbox's dispute hook (`POST /_sandbox/payments/<id>/disputes`): a SEPA claim
        (`debit_unauthorized`, MD01) is contestable, `needs_response` with a due date, by webhook
        and by the dispute inquiry; a return (`debit_returned`, MD06) is final, `lost`."""
        sb = sandboxes["beta"]
        for reason, code, status in (("debit_unauthorized", "MD01", DisputeStatus.NEEDS_RESPONSE),
                                     ("debit_returned", "MD06", DisputeStatus.LOST)):
            r = self.settled(adapter, self.sepa(adapter, "DE89370400440532013000"))
            opened = sb.open_dispute(r.payment.psp_reference, reason)
            hook = psp_webhooks.wait_for(lambda h, r=r: h.path == "/beta" and h.json().get("eventCode") == "CHARGEBACK"
                                         and h.json()["paymentReference"] == r.payment.reference)
            event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
            assert (event.dispute.reason, event.dispute.psp_reason, event.dispute.status) == (
                DisputeReason.DEBIT_RETURNED, code, status)
            found = adapter.inquire_dispute(r.payment, opened["id"])
            assert found.dispute.status == status
            assert (found.dispute.evidence_due_by is None) == (status == DisputeStatus.LOST)
            with pytest.raises(httpx.HTTPStatusError) as again:  # one dispute per payment
                sb.open_dispute(r.payment.psp_reference, reason)
            assert again.value.response.status_code == 409
        with pytest.raises(httpx.HTTPStatusError) as bad:
            sb.open_dispute(r.payment.psp_reference, "general")
        assert bad.value.response.status_code == 400

    def test_invalid_iban_is_rejected(self, adapter):
        with pytest.raises(PspRequestRejectedError):
            self.sepa(adapter, "DE89370400440532013001")

    def test_beta_state_survives_a_restart(self, adapter, sandboxes):
        r = self.approved(adapter)
        sandboxes["beta"].restart()
        assert adapter.inquire(PspReference(r.payment.reference)).state == PspState.AUTHORIZED

    def test_decimal_amounts_on_the_wire(self, adapter, sandboxes):
        r = self.approved(adapter, amount=1050, currency="KWD")
        assert (r.amount, r.currency) == (1050, "KWD")
        raw = [
            e for e in sandboxes["beta"].events() if json.loads(e["body"])["merchantReference"] == r.payment.reference
        ]
        assert json.loads(raw[0]["body"])["amount"] == {"value": "1.050", "currency": "KWD"}
