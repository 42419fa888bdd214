"""Disputes (chargebacks): opened by the PSP's dispute webhook on a captured payment, answered by
the merchant with evidence, closed by the PSP (won or lost). Ledger lines in payments/postings.py:
at creation the disputed amount and the chargeback fee are taken from the merchant's pending
balance; a won dispute mirrors both; a lost one posts nothing more."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from payera.core.errors import InvalidRequestError
from payera.core.money import per_currency_amount
from payera.events.services import event_record
from payera.merchants.models import Merchant
from payments.locks import payment_lock
from payments.models import DS, Dispute, Payment, PaymentAttempt
from payments.postings import chargeback_journals
from payments.serializers import render_dispute
from payments.services.booking_sync import booking_dispute_opened
from payments.services.common import emit, now, post, postings_last, setting, transition
from payments.services.methods import mandate_end_by_code
from psp_adapters.port import DisputeResult, DisputeStatus, Outcome, PspEvent, PspEventKind

logger = logging.getLogger("payera.payments")


class DisputeAttemptUnknownError(Exception):
    """The event's attempt is unknown (the caller parks the event)."""


class DisputeEventRefusedError(Exception):
    """The PSP's dispute event names money the payment never took: another currency, or more than
    is left to dispute (captured less what open disputes already took). Nothing is created or
    posted; the caller raises it to operations (the inbox row `failed` with this message)."""


class DisputeClosedError(InvalidRequestError):
    code = "dispute_closed"
    default_message = "The dispute is closed or its evidence was already sent."


def chargeback_fee(currency: str) -> int:
    """The chargeback fee in `currency`'s minor units (`PAYMENTS_CHARGEBACK_FEE`, a per-currency
    table: payera.core.money.per_currency_amount)."""
    return per_currency_amount(setting("PAYMENTS_CHARGEBACK_FEE", {}), currency, setting="PAYMENTS_CHARGEBACK_FEE")


def _emit_dispute(dispute: Dispute, type_: str) -> None:
    event_record(merchant_id=dispute.merchant_id, type=type_, data=render_dispute(dispute))


def dispute_event_from_inquiry(found: DisputeResult, *, event_id: str) -> PspEvent:
    """The dispute as the PSP's inquiry (`PspAdapter.inquire_dispute`) holds it now, as the event
    `dispute_apply_event` applies: its status, amount and currency are the PSP's, never a webhook's.
    The one path by which a dispute is created or moved (the inbound webhook and reconciliation's
    dispute inquiry both go through it)."""
    return PspEvent(
        event_id=event_id, kind=PspEventKind.DISPUTE, outcome=Outcome.APPROVED, payment=found.payment,
        amount=found.amount, currency=found.currency, occurred_at=now(), dispute=found.dispute,
    )


def dispute_apply_event(*, connector: str, event: PspEvent, actor: str) -> str:
    """Apply a PSP dispute event: create the dispute once (per connector and PSP dispute id) and
    move it to the status the PSP reports. Idempotent; a status it cannot reach is ignored. An
    event naming money the payment never took raises `DisputeEventRefusedError` (nothing moves)."""
    info = event.dispute
    if info is None:
        return "ignored: dispute event without dispute"
    attempt = PaymentAttempt.objects.filter(pk=event.payment.reference, connector=connector).only("payment_id").first()
    if attempt is None:
        raise DisputeAttemptUnknownError(f"unknown attempt {event.payment.reference}")
    if not Payment.objects.filter(pk=attempt.payment_id, amount_captured__gt=0).exists():
        # reordered webhooks: the dispute (e.g. a returned debit) came before the capture it
        # takes back; parked and applied once the capture is recorded, so the ledger never
        # takes back money it has not received
        raise DisputeAttemptUnknownError(f"payment of {event.payment.reference} not captured yet")
    try:
        return _dispute_apply(connector=connector, event=event, attempt_id=attempt.pk, payment_id=attempt.payment_id,
                              actor=actor)
    except IntegrityError:  # a concurrent delivery created it first: apply again on the row
        return _dispute_apply(connector=connector, event=event, attempt_id=attempt.pk, payment_id=attempt.payment_id,
                              actor=actor)


@transaction.atomic(durable=True)
def _dispute_apply(*, connector: str, event: PspEvent, attempt_id: str, payment_id: str, actor: str) -> str:
    info = event.dispute
    assert info is not None
    payment = payment_lock(payment_id)
    with postings_last():
        dispute = Dispute.objects.filter(connector=connector, psp_dispute_id=info.psp_dispute_id[:128]).first()
        notes = []
        if dispute is None:
            dispute = _dispute_open(payment, connector=connector, event=event, attempt_id=attempt_id, actor=actor)
            notes.append("created")
        closed = _dispute_follow(payment, dispute, status=info.status, actor=actor)
        if closed:
            notes.append(closed)
    return "dispute: " + (", ".join(notes) or "unchanged")


def _dispute_event_money(payment: Payment, event: PspEvent) -> tuple[int, str]:
    """The amount and currency a new dispute takes back, checked against the payment (under its
    lock): the event's, or the whole captured amount when the PSP names none. A dispute is in the
    payment's currency and takes back at most what is left to dispute (captured less what open or
    lost disputes took already); anything else is a PSP error or not our payment: refused, never
    posted (docs/payments.md "Disputes")."""
    info = event.dispute
    assert info is not None
    currency = (event.currency or payment.currency).upper()
    amount = event.amount or payment.amount_captured
    left = payment.amount_captured - payment.amount_disputed
    what = f"dispute {info.psp_dispute_id} on payment {payment.id} ({payment.amount_captured} {payment.currency}"
    what += " captured)"
    if currency != payment.currency:
        raise DisputeEventRefusedError(f"{what}: the PSP names {amount} {currency}, another currency; not applied")
    if amount <= 0 or amount > left:
        raise DisputeEventRefusedError(
            f"{what}: the PSP names {amount} {currency}, {left} left to dispute; not applied"
        )
    return amount, currency


def _dispute_open(payment: Payment, *, connector: str, event: PspEvent, attempt_id: str, actor: str) -> Dispute:
    info = event.dispute
    assert info is not None
    amount, currency = _dispute_event_money(payment, event)
    fee = chargeback_fee(currency)
    with transaction.atomic():
        dispute = Dispute.objects.create(
            merchant_id=payment.merchant_id, payment=payment, attempt_id=attempt_id, connector=connector,
            psp_dispute_id=info.psp_dispute_id[:128], amount=amount, currency=currency,
            fee=fee, reason=info.reason.value, psp_reason=info.psp_reason[:32],
        )
    payment.amount_disputed += dispute.amount
    payment.save()
    if payment.payment_method_id:  # a returned SEPA debit whose code ends the mandate (MD01, AC04, …)
        mandate_end_by_code(pm=payment.payment_method, code=dispute.psp_reason,
                            what=f"debit of {payment.id} returned ({dispute.id})")
    _emit_dispute(dispute, "dispute.created")
    emit(payment, "payment.disputed")  # the payment object, with its amount_disputed
    booking_dispute_opened(payment, dispute_id=dispute.id, actor=actor)  # a booking's escrow ends first
    post(
        chargeback_journals(dispute_id=dispute.id, merchant_id=payment.merchant_id, connector=connector,
                            amount=dispute.amount, fee=dispute.fee, currency=dispute.currency),
        occurred_at=now(), metadata={"payment": payment.id, "dispute": dispute.id},
    )
    return dispute


def _dispute_follow(payment: Payment, dispute: Dispute, *, status: DisputeStatus, actor: str) -> str:
    """Move to the PSP's status where the machine allows it; returns a note when closed."""
    if status == DisputeStatus.UNDER_REVIEW and dispute.status == DS.NEEDS_RESPONSE:
        transition(dispute, "submit_evidence", payment=payment, actor=actor, text=dispute.evidence_text, at=now())
        dispute.save()
        return "under_review"
    if status == DisputeStatus.WON:  # from needs_response too: the PSP decided before any answer
        if not transition(dispute, "mark_won", payment=payment, actor=actor, at=now()):
            return ""
        dispute.save()
        payment.amount_disputed -= dispute.amount
        payment.save()
        _emit_dispute(dispute, "dispute.closed")
        post(
            chargeback_journals(dispute_id=dispute.id, merchant_id=payment.merchant_id, connector=dispute.connector,
                                amount=dispute.amount, fee=dispute.fee, currency=dispute.currency, won=True),
            occurred_at=now(), metadata={"payment": payment.id, "dispute": dispute.id},
        )
        return "won"
    if status == DisputeStatus.LOST:
        if not transition(dispute, "mark_lost", payment=payment, actor=actor, at=now()):
            return ""
        dispute.save()
        _emit_dispute(dispute, "dispute.closed")
        return "lost"
    return ""


MAX_EVIDENCE = 10_000


@transaction.atomic(durable=True)
def dispute_submit_evidence(*, merchant: Merchant, dispute_id: str, text: str, actor: str) -> Dispute:
    """The merchant's answer: needs_response -> under_review. Sending the same text again is a
    no-op (idempotent); other text once under review, or any text on a closed dispute, is 400."""
    from payments.selectors import dispute_get

    d0 = dispute_get(merchant=merchant, dispute_id=dispute_id)
    if len(text) > MAX_EVIDENCE:
        raise InvalidRequestError(f"Evidence text is limited to {MAX_EVIDENCE} characters.", param="text")
    payment = payment_lock(d0.payment_id)
    dispute = Dispute.objects.get(pk=d0.pk)
    if dispute.status != DS.NEEDS_RESPONSE:
        if dispute.evidence_submitted_at is not None and dispute.evidence_text == text:
            return dispute
        raise DisputeClosedError()
    transition(dispute, "submit_evidence", payment=payment, actor=actor, text=text, at=now())
    dispute.save()
    return dispute
