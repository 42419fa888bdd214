"""One contract every PSP adapter passes (as Django's BaseCacheTests for cache backends).

Subclass `PspAdapterContract` with `connector = "<name>"`. Tests talk real HTTP to the sandbox
subprocesses. Asynchronous adapters answer PENDING first: `settled()` polls `inquire` until
the outcome is known, as recovery would.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command

from psp_adapters.errors import (
    PspAuthenticationError,
    PspIdempotencyConflictError,
    PspReferenceNotFoundError,
    PspRequestRejectedError,
    PspUnavailableError,
    WebhookSignatureError,
)
from psp_adapters.port import (
    AuthorizeRequest,
    AuthorizeResult,
    CaptureRequest,
    CardData,
    DeclineClass,
    DeclineCode,
    DisputeEvidenceRequest,
    DisputeReason,
    DisputeStatus,
    EvidenceRefusal,
    OperationKind,
    OperationResult,
    Outcome,
    PspAdapter,
    PspEventKind,
    PspReference,
    PspState,
    RefundRequest,
    SettlementKind,
    StoredCardData,
    VoidRequest,
)
from psp_adapters.registry import get_adapter

VISA = "4242424242424242"


def ref(prefix: str = "att") -> str:
    return f"{prefix}_{os.urandom(9).hex()}"


def card(number: str = VISA, *, exp_year: int | None = None) -> CardData:
    return CardData(number=number, exp_month=12, exp_year=exp_year or dt.date.today().year + 3, cvc="123")


def eventually(fn: Callable[[], Any], until: Callable[[Any], bool], timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.mark.django_db(databases=[])
@pytest.mark.usefixtures("psp_settings")
class PspAdapterContract:
    connector: str

    @pytest.fixture
    def adapter(self) -> PspAdapter:
        return get_adapter(self.connector)

    # --- helpers ----------------------------------------------------------------------
    def authorize(self, adapter: PspAdapter, number: str = VISA, **kwargs: Any) -> AuthorizeResult:
        req = AuthorizeRequest(
            reference=kwargs.pop("reference", None) or ref(),
            amount=kwargs.pop("amount", 1000),
            currency=kwargs.pop("currency", "EUR"),
            payment_method=kwargs.pop("payment_method", None) or card(number),
            **kwargs,
        )
        return adapter.authorize(req)

    def settled(self, adapter: PspAdapter, result: AuthorizeResult) -> AuthorizeResult:
        if result.outcome != Outcome.PENDING:
            return result
        return eventually(lambda: adapter.inquire(result.payment), lambda r: r.outcome != Outcome.PENDING)

    def op_settled(self, adapter: PspAdapter, op: OperationResult) -> OperationResult:
        if op.outcome != Outcome.PENDING:
            return op

        def find() -> OperationResult:
            r = adapter.inquire(op.payment)
            return next(o for o in r.operations if o.reference == op.reference and o.kind == op.kind)

        return eventually(find, lambda o: o.outcome != Outcome.PENDING)

    def approved(self, adapter: PspAdapter, number: str = VISA, **kwargs: Any) -> AuthorizeResult:
        result = self.settled(adapter, self.authorize(adapter, number, **kwargs))
        assert result.outcome == Outcome.APPROVED, result
        return result

    def declined(self, adapter: PspAdapter, number: str, **kwargs: Any) -> AuthorizeResult:
        result = self.settled(adapter, self.authorize(adapter, number, **kwargs))
        assert result.outcome in (Outcome.DECLINED, Outcome.SOFT_DECLINED), result
        assert result.decline is not None
        return result

    # --- authorization ----------------------------------------------------------------
    def test_approved_cards_authorize(self, adapter):
        for number in (VISA, "5555555555554444"):
            r = self.approved(adapter, number, amount=1234)
            assert r.state == PspState.AUTHORIZED
            assert (r.amount, r.currency) == (1234, "EUR")
            assert r.payment.psp_reference
            assert r.network_transaction_id

    @pytest.mark.parametrize(
        "number, code",
        [
            ("4000000000000002", DeclineCode.GENERIC_DECLINE),
            ("4000000000009995", DeclineCode.INSUFFICIENT_FUNDS),
            ("4000000000000069", DeclineCode.EXPIRED_CARD),
        ],
    )
    def test_hard_declines(self, adapter, number, code):
        r = self.declined(adapter, number)
        assert r.outcome == Outcome.DECLINED
        assert r.decline.code == code
        assert r.decline.decline_class == DeclineClass.HARD
        assert r.decline.psp_code  # the PSP's own code is kept

    def test_expired_card_by_date_declines(self, adapter):
        r = self.declined(adapter, VISA, payment_method=card(exp_year=2020))
        assert r.decline.code == DeclineCode.EXPIRED_CARD

    def test_capture_at_authorization(self, adapter):
        r = self.approved(adapter, capture=True, amount=700)
        assert r.state == PspState.CAPTURED
        assert r.amount_captured == 700

    def test_authorize_retry_with_same_reference_is_one_authorization(self, adapter, sandboxes):
        reference = ref()
        first = self.approved(adapter, reference=reference)
        again = self.settled(adapter, self.authorize(adapter, reference=reference))
        assert again.payment == first.payment
        assert again.outcome == Outcome.APPROVED
        assert adapter.inquire(PspReference(reference)).payment.psp_reference == first.payment.psp_reference

    def test_concurrent_authorize_retries_make_one_authorization(self, adapter, sandboxes):
        from concurrent.futures import ThreadPoolExecutor

        reference = ref()
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda _: self.authorize(adapter, reference=reference), range(6)))
        assert len({r.payment.psp_reference for r in results}) == 1
        assert len(sandboxes[self.connector].payments(reference)) == 1

    def test_same_reference_other_parameters_is_an_idempotency_conflict_with_an_unknown_outcome(self, adapter):
        """409 `idempotency_conflict`: the key's first request may have been processed, so the
        error says the outcome is unknown (never "not processed": that would cascade and could
        charge twice)."""
        reference = ref()
        self.authorize(adapter, reference=reference, amount=1000)
        with pytest.raises(PspIdempotencyConflictError) as exc:
            self.authorize(adapter, reference=reference, amount=2000)
        assert (exc.value.status_code, exc.value.psp_code) == (409, "idempotency_conflict")
        assert exc.value.may_have_processed is True

    def test_inquire_by_reference_only(self, adapter):
        r = self.approved(adapter)
        found = adapter.inquire(PspReference(r.payment.reference))
        assert found.payment == r.payment and found.state == PspState.AUTHORIZED

    def test_inquire_unknown_reference_is_not_found(self, adapter):
        with pytest.raises(PspReferenceNotFoundError) as exc:
            adapter.inquire(PspReference(ref()))
        assert exc.value.may_have_processed is False

    def test_amount_mismatch_test_hook(self, adapter):
        r = self.approved(adapter, amount=1000, metadata={"sandbox_amount_delta": "-1"})
        inquired = adapter.inquire(r.payment)
        assert (inquired.amount, inquired.currency) == (999, "EUR")

    def test_currency_mismatch_test_hook(self, adapter):
        r = self.approved(adapter, amount=1000, metadata={"sandbox_currency": "USD"})
        assert adapter.inquire(r.payment).currency == "USD"

    def test_zero_decimal_currency(self, adapter):
        r = self.approved(adapter, amount=1500, currency="jpy")
        assert (r.amount, r.currency) == (1500, "JPY")

    # --- off-session, saved cards ------------------------------------------------------
    def test_off_session_card_declines_insufficient_funds_but_on_session_approves(self, adapter):
        first = self.approved(adapter, "4000000000000341")
        assert first.network_transaction_id
        r = self.declined(adapter, "4000000000000341", off_session=True,
                          network_transaction_id=first.network_transaction_id)
        assert r.decline.code == DeclineCode.INSUFFICIENT_FUNDS

    def test_authorization_answer_carries_a_network_transaction_id(self, adapter):
        a, b = self.approved(adapter), self.approved(adapter)
        assert a.network_transaction_id and b.network_transaction_id
        assert a.network_transaction_id != b.network_transaction_id

    def test_card_mit_without_token_needs_the_network_transaction_id(self, adapter, sandboxes):
        reference = ref()
        with pytest.raises(PspRequestRejectedError) as exc:
            self.authorize(adapter, "4242424242424242", reference=reference, off_session=True)
        assert exc.value.psp_code == "network_transaction_id_required"
        assert sandboxes[self.connector].payments(reference) == []

    def test_card_mit_with_another_psps_network_transaction_id_is_flagged_and_approved(self, adapter, sandboxes):
        reference = ref()
        r = self.approved(adapter, "4242424242424242", reference=reference, off_session=True,
                          network_transaction_id="NTIDFROMOTHERPSP01")
        assert r.network_transaction_id == "NTIDFROMOTHERPSP01"  # the MIT names the first CIT
        (row,) = sandboxes[self.connector].payments(reference)
        assert row["off_session"] == 1 and row["network_transaction_id"] == "NTIDFROMOTHERPSP01"

    def test_3ds_card_off_session_declines_authentication_required(self, adapter):
        r = self.declined(adapter, "4000000000003220", off_session=True, network_transaction_id="NTIDX")
        assert r.decline.code == DeclineCode.AUTHENTICATION_REQUIRED

    def test_saved_card_charged_off_session(self, adapter):
        first = self.approved(adapter, store_payment_method=True)
        assert first.payment_method_token
        again = self.approved(
            adapter,
            payment_method=StoredCardData(token=first.payment_method_token),
            off_session=True,
            network_transaction_id=first.network_transaction_id,
        )
        assert again.network_transaction_id == first.network_transaction_id

    # --- 3-D Secure ---------------------------------------------------------------------
    def _challenge(self, adapter, sandboxes, number: str, result: str) -> AuthorizeResult:
        return_url = "https://shop.example/return?x=1"
        r = self.authorize(adapter, number, return_url=return_url)
        assert r.outcome == Outcome.REQUIRES_ACTION, r
        assert r.action is not None
        response = sandboxes[self.connector].submit_challenge(r.action.redirect_url, result)
        assert response.status_code == 303
        assert response.headers["location"].startswith(return_url)
        assert r.payment.reference in response.headers["location"]
        done = adapter.complete_authentication(r.payment)
        return self.settled(adapter, done)

    def test_3ds_challenge_passed_approves(self, adapter, sandboxes):
        r = self._challenge(adapter, sandboxes, "4000000000003220", "pass")
        assert r.outcome == Outcome.APPROVED and r.state == PspState.AUTHORIZED

    def test_3ds_form_submitted_twice_changes_nothing(self, adapter, sandboxes):
        r = self.authorize(adapter, "4000000000003220", return_url="https://shop.example/r")
        sandboxes[self.connector].submit_challenge(r.action.redirect_url, "pass")
        again = sandboxes[self.connector].submit_challenge(r.action.redirect_url, "fail")
        assert again.status_code == 303
        assert self.settled(adapter, adapter.inquire(r.payment)).outcome == Outcome.APPROVED

    def test_3ds_challenge_failed_declines(self, adapter, sandboxes):
        r = self._challenge(adapter, sandboxes, "4000000000003220", "fail")
        assert r.outcome == Outcome.DECLINED
        assert r.decline.code == DeclineCode.AUTHENTICATION_FAILED

    def test_3ds_card_declined_after_passed_challenge(self, adapter, sandboxes):
        r = self._challenge(adapter, sandboxes, "4000008400001629", "pass")
        assert r.outcome == Outcome.DECLINED
        assert r.decline.code == DeclineCode.GENERIC_DECLINE

    def test_3ds_outcome_also_arrives_by_webhook(self, adapter, sandboxes, psp_webhooks):
        r = self._challenge(adapter, sandboxes, "4000000000003220", "pass")
        hook = psp_webhooks.wait_for(lambda h: r.payment.reference in h.body.decode() and self.connector in h.path)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.kind == PspEventKind.AUTHORIZATION
        assert event.outcome == Outcome.APPROVED
        assert event.payment == r.payment

    # --- capture, void, refund -----------------------------------------------------------
    def test_partial_capture(self, adapter):
        r = self.approved(adapter, amount=1000)
        op = adapter.capture(CaptureRequest(payment=r.payment, reference=ref("cap"), amount=600, currency="EUR"))
        assert op.kind == OperationKind.CAPTURE
        op = self.op_settled(adapter, op)
        assert op.outcome == Outcome.APPROVED and op.amount == 600
        after = adapter.inquire(r.payment)
        assert after.state == PspState.CAPTURED and after.amount_captured == 600

    def test_capture_retry_is_one_capture(self, adapter):
        r = self.approved(adapter, amount=1000)
        req = CaptureRequest(payment=r.payment, reference=ref("cap"), amount=1000, currency="EUR")
        a = adapter.capture(req)
        b = adapter.capture(req)
        assert a.psp_reference == b.psp_reference
        self.op_settled(adapter, a)
        assert len([o for o in adapter.inquire(r.payment).operations if o.kind == OperationKind.CAPTURE]) == 1

    def test_capture_more_than_authorized_is_rejected(self, adapter):
        r = self.approved(adapter, amount=1000)
        with pytest.raises(PspRequestRejectedError):
            adapter.capture(CaptureRequest(payment=r.payment, reference=ref("cap"), amount=1001, currency="EUR"))

    def test_void(self, adapter):
        r = self.approved(adapter)
        op = self.op_settled(adapter, adapter.void(VoidRequest(payment=r.payment, reference=ref("void"))))
        assert op.outcome == Outcome.APPROVED
        assert adapter.inquire(r.payment).state == PspState.VOIDED

    def test_capture_by_reference_without_psp_reference(self, adapter):
        r = self.approved(adapter)
        payment = PspReference(r.payment.reference)
        op = adapter.capture(CaptureRequest(payment=payment, reference=ref("cap"), amount=1000, currency="EUR"))
        assert self.op_settled(adapter, op).outcome == Outcome.APPROVED

    def _captured(self, adapter, number: str = VISA, amount: int = 1000) -> AuthorizeResult:
        r = self.approved(adapter, number, amount=amount)
        op = adapter.capture(CaptureRequest(payment=r.payment, reference=ref("cap"), amount=amount, currency="EUR"))
        assert self.op_settled(adapter, op).outcome == Outcome.APPROVED
        return r

    def test_partial_refunds_up_to_the_captured_amount(self, adapter):
        r = self._captured(adapter)
        for amount in (300, 700):
            op = adapter.refund(RefundRequest(payment=r.payment, reference=ref("re"), amount=amount, currency="EUR"))
            assert self.op_settled(adapter, op).outcome == Outcome.APPROVED
        with pytest.raises(PspRequestRejectedError):
            adapter.refund(RefundRequest(payment=r.payment, reference=ref("re"), amount=1, currency="EUR"))
        assert adapter.inquire(r.payment).amount_refunded == 1000

    def test_refund_fails_asynchronously(self, adapter, psp_webhooks):
        r = self._captured(adapter, "4000000000005126")
        op = adapter.refund(RefundRequest(payment=r.payment, reference=ref("re"), amount=500, currency="EUR"))
        assert op.outcome == Outcome.PENDING
        hook = psp_webhooks.wait_for(lambda h: op.reference in h.body.decode())
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.kind == PspEventKind.REFUND
        assert event.outcome == Outcome.DECLINED
        assert event.operation_reference == op.reference
        assert event.payment.reference == r.payment.reference
        assert self.op_settled(adapter, op).outcome == Outcome.DECLINED
        assert adapter.inquire(r.payment).amount_refunded == 0

    def _disputed(self, adapter, psp_webhooks):
        r = self._captured(adapter, "4000000000000259", amount=2500)

        def is_dispute(h):
            return r.payment.reference in h.body.decode() and (b"dispute" in h.body or b"CHARGEBACK" in h.body)

        hook = psp_webhooks.wait_for(is_dispute)
        return r, adapter.parse_webhook(body=hook.body, headers=hook.headers)

    def test_dispute_arrives_by_webhook_after_capture(self, adapter, psp_webhooks):
        r, event = self._disputed(adapter, psp_webhooks)
        assert event.kind == PspEventKind.DISPUTE
        assert event.dispute is not None and event.dispute.reason == DisputeReason.FRAUDULENT
        assert event.dispute.status == DisputeStatus.NEEDS_RESPONSE
        assert (event.amount, event.currency) == (2500, "EUR")
        assert event.payment == r.payment

    def test_a_dispute_inquiry_tells_what_the_psp_holds_now(self, adapter, psp_webhooks, sandboxes):
        r, opened = self._disputed(adapter, psp_webhooks)
        dispute_id = opened.dispute.psp_dispute_id
        found = adapter.inquire_dispute(r.payment, dispute_id)
        # what the dispute's webhook said: its authorization, amount, reason and status
        assert (found.payment, found.dispute, found.amount, found.currency) == (r.payment, opened.dispute, 2500, "EUR")
        assert sandboxes[self.connector].close_dispute(dispute_id, "won").status_code == 200
        # the network's decision, from the PSP's storage (by our reference only, too)
        later = adapter.inquire_dispute(PspReference(r.payment.reference), dispute_id)
        assert later.dispute.status == DisputeStatus.WON and later.dispute.psp_dispute_id == dispute_id
        other = self._captured(adapter)
        for payment, unknown in ((r.payment, dispute_id[:-4] + "0000"),  # an id the PSP never gave
                                 (r.payment, "../authorizations"),  # an id is never a path
                                 (other.payment, dispute_id)):  # another authorization's dispute
            with pytest.raises(PspReferenceNotFoundError):
                adapter.inquire_dispute(payment, unknown)

    def test_evidence_reaches_the_psp_once_and_puts_the_dispute_under_review(self, adapter, psp_webhooks, sandboxes):
        r, opened = self._disputed(adapter, psp_webhooks)
        dispute_id = opened.dispute.psp_dispute_id
        assert opened.dispute.evidence_due_by is not None and opened.dispute.evidence_due_by > dt.datetime.now(dt.UTC)
        req = DisputeEvidenceRequest(payment=r.payment, psp_dispute_id=dispute_id, reference="dp_" + ref("x"),
                                     text="Signed delivery receipt.")
        first = adapter.submit_dispute_evidence(req)
        assert first.outcome == Outcome.APPROVED and first.psp_reference
        assert first.dispute.dispute.status == DisputeStatus.UNDER_REVIEW
        again = adapter.submit_dispute_evidence(req)  # a retry (after a timeout): the same submission
        assert (again.outcome, again.psp_reference) == (Outcome.APPROVED, first.psp_reference)
        held = sandboxes[self.connector].dispute(dispute_id)
        assert held["status"] == "under_review"
        assert (held["evidence"]["reference"], held["evidence"]["text"]) == (req.reference, req.text)
        assert adapter.inquire_dispute(r.payment, dispute_id).dispute.status == DisputeStatus.UNDER_REVIEW
        # another submission for the dispute is refused, as a result
        other = adapter.submit_dispute_evidence(DisputeEvidenceRequest(
            payment=r.payment, psp_dispute_id=dispute_id, reference="dp_other", text="More."))
        assert (other.outcome, other.refusal) == (Outcome.DECLINED, EvidenceRefusal.ALREADY_SUBMITTED)

    def test_evidence_after_the_due_date_or_on_a_closed_dispute_is_refused(self, adapter, psp_webhooks, sandboxes):
        sandbox = sandboxes[self.connector]
        r, opened = self._disputed(adapter, psp_webhooks)
        dispute_id = opened.dispute.psp_dispute_id
        assert sandbox.set_evidence_due(dispute_id, time.time() - 60).status_code == 200
        req = DisputeEvidenceRequest(payment=r.payment, psp_dispute_id=dispute_id, reference="dp_late", text="Late.")
        late = adapter.submit_dispute_evidence(req)
        assert (late.outcome, late.refusal) == (Outcome.DECLINED, EvidenceRefusal.PAST_DUE)
        assert sandbox.dispute(dispute_id)["evidence"] is None
        assert sandbox.set_evidence_due(dispute_id, None).status_code == 200
        assert sandbox.close_dispute(dispute_id, "lost").status_code == 200
        closed = adapter.submit_dispute_evidence(req)
        assert (closed.outcome, closed.refusal) == (Outcome.DECLINED, EvidenceRefusal.DISPUTE_CLOSED)

    @pytest.mark.parametrize("status", ["won", "lost"])
    def test_a_dispute_closed_by_the_network_arrives_by_webhook_with_its_final_status(
        self, adapter, psp_webhooks, sandboxes, status
    ):
        r, opened = self._disputed(adapter, psp_webhooks)
        sandbox = sandboxes[self.connector]
        dispute_id = opened.dispute.psp_dispute_id
        assert sandbox.close_dispute(dispute_id, "maybe").status_code == 400
        assert sandbox.close_dispute("dp_NOSUCH", status).status_code == 404
        assert sandbox.close_dispute(dispute_id, status).status_code == 200
        assert sandbox.close_dispute(dispute_id, "won").status_code == 409  # decided once

        def is_closed(h):
            text = h.body.decode()
            return dispute_id in text and f'"{status}"' in text

        hook = psp_webhooks.wait_for(is_closed)
        event = adapter.parse_webhook(body=hook.body, headers=hook.headers)
        assert event.kind == PspEventKind.DISPUTE and event.event_id != opened.event_id
        assert event.dispute.psp_dispute_id == dispute_id
        assert event.dispute.status == DisputeStatus(status)
        assert event.payment == r.payment
        (held,) = sandbox.payments(r.payment.reference)
        assert [d["status"] for d in held["disputes"]] == [status]
        # the day's report: the chargeback, and for a won dispute its reversal (the amount back, the
        # dispute's id as the operation id, the fee the agreed schedule says: none)
        rows = [row for row in adapter.parse_settlement_report(adapter.fetch_settlement_report(
            dt.datetime.now(dt.UTC).date())) if row.reference == r.payment.reference]  # fmt: skip
        disputes = {row.kind: row for row in rows if row.operation_psp_reference == dispute_id}
        assert disputes[SettlementKind.CHARGEBACK].gross == -2500
        if status == "lost":
            assert SettlementKind.CHARGEBACK_REVERSAL not in disputes
        else:
            back = disputes[SettlementKind.CHARGEBACK_REVERSAL]
            assert (back.gross, back.fee, back.net, back.currency) == (2500, 0, 2500, "EUR")
            assert back.fee == adapter.fee_schedule.fee(back.kind, back.gross, back.currency)
            assert back.psp_reference == r.payment.psp_reference and back.operation_reference is None

    # --- transport errors ----------------------------------------------------------------
    def test_psp_5xx_before_processing_is_unavailable(self, adapter):
        reference = ref()
        with pytest.raises(PspUnavailableError) as exc:
            self.authorize(adapter, reference=reference, metadata={"sandbox_fail": "503"})
        assert exc.value.may_have_processed is False
        with pytest.raises(PspReferenceNotFoundError):
            adapter.inquire(PspReference(reference))

    def test_failure_hook_targets_one_psp(self, adapter):
        other = "beta" if self.connector == "alpha" else "alpha"
        self.approved(adapter, metadata={f"sandbox_fail_{other}": "503"})
        with pytest.raises(PspUnavailableError):
            self.authorize(adapter, metadata={f"sandbox_fail_{self.connector}": "502"})

    def test_connection_refused_is_unavailable(self, adapter):
        import socket

        from psp_adapters.http import build_http_client

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        broken = type(adapter)(
            name=self.connector,
            options={"base_url": f"http://127.0.0.1:{port}"},
            credentials={"api_key": "x", "webhook_secret": "y"},
            http=build_http_client({"connect_timeout": 1}),
        )
        with pytest.raises(PspUnavailableError):
            self.authorize(broken)

    def test_wrong_api_key_is_refused(self, adapter):
        wrong = type(adapter)(
            name=self.connector,
            options={"base_url": adapter.client.base_url},
            credentials={"api_key": "wrong", "webhook_secret": "y"},
            http=adapter.client.http,
        )
        with pytest.raises(PspAuthenticationError):
            self.authorize(wrong)
        path = "/v1/authorizations" if self.connector == "alpha" else "/api/payments"
        assert adapter.client.http.post(adapter.client.base_url + path, json={}).status_code == 401

    # --- webhooks ---------------------------------------------------------------------------
    def _some_webhook(self, adapter, psp_webhooks):
        r = self._captured(adapter, "4000000000005126")
        op = adapter.refund(RefundRequest(payment=r.payment, reference=ref("re"), amount=100, currency="EUR"))
        return psp_webhooks.wait_for(lambda h: op.reference in h.body.decode())

    def test_webhook_with_bad_signature_is_rejected(self, adapter, psp_webhooks):
        hook = self._some_webhook(adapter, psp_webhooks)
        adapter.parse_webhook(body=hook.body, headers=hook.headers)  # genuine: accepted
        with pytest.raises(WebhookSignatureError):
            adapter.parse_webhook(body=hook.body.replace(b"EUR", b"USD"), headers=hook.headers)
        with pytest.raises(WebhookSignatureError):
            adapter.parse_webhook(body=hook.body, headers={})
        forged = {k: v[:-4] + "0000" for k, v in hook.headers.items() if "signature" in k.lower()}
        with pytest.raises(WebhookSignatureError):
            adapter.parse_webhook(body=hook.body, headers=forged)

    # --- settlement ---------------------------------------------------------------------------
    def test_settlement_report_round_trip(self, adapter, capsys):
        captured = self._captured(adapter, amount=4321)
        refund = adapter.refund(
            RefundRequest(payment=captured.payment, reference=ref("re"), amount=321, currency="EUR")
        )
        self.op_settled(adapter, refund)
        today = dt.datetime.now(dt.UTC).date()
        call_command("sandbox_settlement_report", psp=self.connector, date=today.isoformat())
        raw = capsys.readouterr().out.encode()
        report = adapter.read_settlement_report(raw)
        assert report.errors == ()
        assert report.period_start == report.period_end == today
        mine = [r for r in adapter.parse_settlement_report(raw) if r.reference == captured.payment.reference]
        by_kind = {r.kind: r for r in mine}
        cap = by_kind[SettlementKind.CAPTURE]
        assert (cap.gross, cap.currency, cap.psp_reference) == (4321, "EUR", captured.payment.psp_reference)
        assert cap.fee > 0 and cap.net == cap.gross - cap.fee
        assert cap.payout_batch_id and cap.settled_on == today and cap.line_number > 1
        for row in mine:  # the agreed fee schedule explains every fee in the report
            assert row.fee == adapter.fee_schedule.fee(row.kind, row.gross, row.currency)
        ref_row = by_kind[SettlementKind.REFUND]
        assert ref_row.gross == -321 and ref_row.operation_reference == refund.reference
        # the running sandbox serves the same report over HTTP
        fetched = adapter.parse_settlement_report(adapter.fetch_settlement_report(today))
        assert {(r.kind, r.gross) for r in fetched if r.reference == captured.payment.reference} == {
            (r.kind, r.gross) for r in mine
        }

    def test_settlement_report_for_a_quiet_day_is_empty_but_dated(self, adapter, capsys):
        day = dt.date(2001, 1, 1)
        call_command("sandbox_settlement_report", psp=self.connector, date=day.isoformat())
        report = adapter.read_settlement_report(capsys.readouterr().out.encode())
        assert report.rows == () and report.period_start == day
