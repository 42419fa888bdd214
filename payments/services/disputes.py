"""Disputes (chargebacks): opened by the PSP's dispute webhook on a captured payment, answered by
the merchant with evidence (sent on to the PSP: `dispute_submit_evidence`), closed by the PSP (won or
lost). Ledger lines in payments/postings.py:
at creation the disputed amount and the chargeback fee are taken from the merchant's pending
balance; a won dispute mirrors both; a lost one posts nothing more."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.db.models import Q

from payera.core.db import outside_transaction
from payera.core.errors import InvalidRequestError, PayeraError
from payera.core.masking import mask_text
from payera.core.money import per_currency_amount
from payera.events.services import event_record
from payera.merchants.models import Merchant
from payments.locks import payment_lock
from payments.method_types import method_spec
from payments.models import DS, Dispute, Payment, PaymentAttempt
from payments.postings import chargeback_journals
from payments.serializers import render_dispute
from payments.services.booking_sync import booking_dispute_opened
from payments.services.common import emit, now, post, postings_last, recovery_delay, setting, transition
from payments.services.methods import mandate_end_by_code
from payments.services.subscriptions import subscription_charge_returned
from psp_adapters.errors import PspError, PspReferenceNotFoundError, PspUnavailableError
from psp_adapters.port import (
    DisputeEvidenceRequest,
    DisputeEvidenceResult,
    DisputeReason,
    DisputeResult,
    DisputeStatus,
    EvidenceRefusal,
    Outcome,
    PspEvent,
    PspEventKind,
    PspReference,
)
from psp_adapters.registry import get_adapter

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


class DisputeEvidencePastDueError(InvalidRequestError):
    code = "evidence_past_due"
    default_message = "The dispute's evidence due date has passed: the PSP no longer takes evidence."


class DisputeEvidencePendingError(InvalidRequestError):
    code = "dispute_evidence_pending"
    default_message = ("Other evidence was sent and the PSP's answer is not known yet; it is sent again until "
                       "the PSP answers.")


class DisputeEvidenceNotSentError(PayeraError):
    """The PSP did not take the request (down, or refused it as invalid): nothing reached the
    network, the dispute still needs a response, and the merchant may send the evidence again."""

    type = "api_error"
    code = "psp_error"
    http_status = 502
    default_message = ("The payment service provider did not take the evidence; it was not sent and the dispute "
                       "still needs a response. Send it again.")


class DisputeEvidenceMismatchError(PayeraError):
    """The PSP says the dispute is not on this payment (it does not know the dispute id, or holds it
    on another payment): Payera's and the PSP's data disagree. Sending again cannot help; the
    dispute is flagged for operations (stuck item `dispute.evidence_mismatch`)."""

    type = "api_error"
    code = "dispute_mismatch"
    http_status = 502
    default_message = ("The payment service provider does not hold this dispute on this payment; the evidence was "
                       "not recorded on the dispute. Operations have been alerted to correct it; the dispute still "
                       "needs a response.")


EVIDENCE_MISMATCH = "dispute_mismatch"  # evidence_error's prefix: the stuck sweeper flags it


class DisputeEvidencePspUnavailableError(DisputeEvidenceNotSentError):
    code = "psp_unavailable"
    http_status = 503
    default_message = ("The payment service provider is unavailable; the evidence was not sent and the dispute "
                       "still needs a response. Send it again later.")


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
        elif _dispute_due_follow(dispute, info.evidence_due_by if info.status == DisputeStatus.NEEDS_RESPONSE
                                 else None):
            notes.append("evidence_due_by moved")
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
    reason = info.reason.value
    if _under_mandate(payment):
        # a debit under a mandate (SEPA) has no chargeback: whatever reason code the bank gave
        # (one the connector does not map too), the money came back as a returned debit
        reason = DisputeReason.DEBIT_RETURNED.value
    with transaction.atomic():
        dispute = Dispute.objects.create(
            merchant_id=payment.merchant_id, payment=payment, attempt_id=attempt_id, connector=connector,
            psp_dispute_id=info.psp_dispute_id[:128], amount=amount, currency=currency,
            fee=fee, reason=reason, psp_reason=info.psp_reason[:32],
            evidence_due_by=info.evidence_due_by if info.status == DisputeStatus.NEEDS_RESPONSE else None,
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


def _under_mandate(payment: Payment) -> bool:
    """Whether the payment is a debit made under a mandate (SEPA), not a card payment."""
    return bool(payment.payment_method_id and method_spec(payment.payment_method.type).mandate)


def _dispute_due_follow(dispute: Dispute, due: dt.datetime | None) -> bool:
    """The PSP's evidence due date as its webhook or inquiry carries it now (it may extend it): an
    open dispute still waiting for the merchant's answer takes it, and the merchant is told by
    `dispute.updated`. A date the PSP no longer names is kept (never cleared by a silent field)."""
    if due is None or dispute.status != DS.NEEDS_RESPONSE or dispute.evidence_due_by == due:
        return False
    logger.info("dispute %s: %s moved evidence_due_by from %s to %s", dispute.pk, dispute.connector,
                dispute.evidence_due_by, due)
    dispute.evidence_due_by = due
    dispute.save(update_fields=["evidence_due_by", "updated_at"])
    _emit_dispute(dispute, "dispute.updated")
    return True


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
        _debit_returned(payment, dispute)
        return "lost"
    return ""


def _debit_returned(payment: Payment, dispute: Dispute) -> None:
    """A returned debit is final only once its dispute is `lost`: a SEPA return (R-transaction) the
    PSP opens `lost` gets here in the transaction that opens it; a dispute the PSP opens
    `needs_response` (a SEPA unauthorised-transaction claim, answered with the mandate) only when
    the network decides against the merchant. Then, and only then, the subscription's period the
    debit paid is due again (`subscription_charge_returned`); a won dispute never reopens it, so the
    period is never collected a second time while its first debit may still come back
    (docs/decisions/sepa-return-vs-contestable-dispute.md). Only a debit (a payment made under a
    mandate) is returned: a card payment's chargeback never reopens a period, whatever reason the
    PSP's code maps to (alpha's `RTRN` is `debit_returned`)."""
    if dispute.reason != DisputeReason.DEBIT_RETURNED.value or not _under_mandate(payment):
        return
    note = subscription_charge_returned(payment=payment, dispute_id=dispute.id, psp_reason=dispute.psp_reason)
    logger.info("dispute %s: returned debit of %s: %s", dispute.id, payment.id, note)


def _dispute_locked(dispute_id: str) -> tuple[Payment, Dispute]:
    """The dispute under its payment's lock (the payment row guards its disputes): the payment
    locked (`payment_lock`, inside the caller's transaction), then the dispute read afresh, so
    what the caller decides on is what no one else can change until it commits."""
    payment_id = Dispute.objects.values_list("payment_id", flat=True).get(pk=dispute_id)
    payment = payment_lock(payment_id)
    return payment, Dispute.objects.get(pk=dispute_id)


MAX_EVIDENCE = 10_000


def dispute_submit_evidence(*, merchant: Merchant, dispute_id: str, text: str, actor: str) -> Dispute:
    """The merchant's answer, sent on to the PSP (and so to the card network) in three steps: the
    evidence is recorded as pending (committed), sent to the PSP outside any transaction with the
    dispute id as the PSP's idempotency key (one submission per dispute, a retry is the same one),
    and the PSP's answer recorded. The dispute is `under_review` only once the PSP took it.

    - Sending the same text again once taken is a no-op; other text once under review, or any text
      on a closed dispute, is 400 `dispute_closed`. After the PSP's due date: 400 `evidence_past_due`.
    - The PSP refused it (past its due date, the dispute closed there): 400, nothing pending.
    - The PSP did not take the request (5xx, connection refused): 503 `psp_unavailable` (or 502
      `psp_error`), the dispute still `needs_response`, nothing pending: send it again.
    - No answer (a timeout): the dispute stays `needs_response` with `evidence_pending`; recovery
      sends it again with the same key until the PSP answers (`dispute_evidence_recover_due`)."""
    if len(text) > MAX_EVIDENCE:
        raise InvalidRequestError(f"Evidence text is limited to {MAX_EVIDENCE} characters.", param="text")
    dispute, send, first = _evidence_start(merchant=merchant, dispute_id=dispute_id, text=text, actor=actor)
    if not send:
        return dispute
    return _evidence_send(dispute_id=dispute.pk, actor=actor, raise_errors=True,
                          first=dispute.evidence_pending_at if first else None)


@transaction.atomic(durable=True)
def _evidence_start(*, merchant: Merchant, dispute_id: str, text: str, actor: str) -> tuple[Dispute, bool, bool]:
    """Record the evidence as pending, under the payment lock. Returns (dispute, send, first):
    send False: nothing to send; first True: this call made it pending (no earlier send of it
    may have reached the PSP), False: a resend of evidence already pending."""
    from payments.selectors import dispute_get

    _, dispute = _dispute_locked(dispute_get(merchant=merchant, dispute_id=dispute_id).pk)
    if dispute.status != DS.NEEDS_RESPONSE:
        if dispute.evidence_submitted_at is not None and dispute.evidence_text == text:
            return dispute, False, False
        raise DisputeClosedError()
    if dispute.evidence_pending_at is not None:
        if dispute.evidence_text != text:
            raise DisputeEvidencePendingError()
        # the same evidence again: the same submission at the PSP (its key). This send now owns the
        # pending evidence (its time): an earlier send's "not taken" no longer ends it while this
        # one is out, and recovery waits its grace period as after a first send
        dispute.evidence_pending_at = now()
        dispute.save(update_fields=["evidence_pending_at", "updated_at"])
        return dispute, True, False
    if dispute.evidence_due_by is not None and now() > dispute.evidence_due_by:
        raise DisputeEvidencePastDueError()
    dispute.evidence_text = text
    dispute.evidence_pending_at = now()
    dispute.evidence_error = ""
    dispute.evidence_sends = 0
    dispute.evidence_next_send_at = None
    dispute.save(update_fields=["evidence_text", "evidence_pending_at", "evidence_error", "evidence_sends",
                                "evidence_next_send_at", "updated_at"])
    logger.info("dispute %s: evidence recorded, sending to %s (%s)", dispute.pk, dispute.connector, actor)
    return dispute, True, True


def _evidence_send(*, dispute_id: str, actor: str, raise_errors: bool, first: dt.datetime | None = None) -> Dispute:
    """Send the dispute's evidence with its key. `first`: the `evidence_pending_at` this call set
    (its first send); only then does a request the PSP did not take mean nothing reached it. A
    resend's failure (recovery, the merchant's repeat) leaves it pending: an earlier send may have
    been taken, and the PSP holds that one under the same key."""
    dispute = Dispute.objects.select_related("attempt").get(pk=dispute_id)
    attempt = dispute.attempt
    req = DisputeEvidenceRequest(
        payment=PspReference(attempt.pk, attempt.psp_reference or None), psp_dispute_id=dispute.psp_dispute_id,
        reference=dispute.pk, text=dispute.evidence_text,
    )
    try:
        with outside_transaction():
            result = get_adapter(dispute.connector).submit_dispute_evidence(req)
    except PspReferenceNotFoundError as exc:
        # not "not taken": the PSP and Payera disagree on the dispute (a resend cannot fix it, and
        # the PSP may hold the text on another payment's dispute): nothing pending, flagged
        dispute = _evidence_mismatch(dispute_id=dispute_id, note=f"{exc.code}: {exc.message}", notify=not raise_errors)
        logger.error("dispute %s: %s says dispute %s is not on attempt %s: flagged for operations", dispute_id,
                     dispute.connector, dispute.psp_dispute_id, attempt.pk)
        if raise_errors:
            raise DisputeEvidenceMismatchError() from None
        return dispute
    except PspError as exc:
        if exc.may_have_processed or first is None:  # unknown: left pending, sent again with the same key
            logger.warning("dispute %s: evidence sent to %s, outcome unknown (%s); left pending", dispute_id,
                           dispute.connector, exc.code)
            return Dispute.objects.get(pk=dispute_id)
        ended = _evidence_not_taken(dispute_id=dispute_id, pending_at=first,
                                    note=f"{exc.code}: not taken by {dispute.connector}")
        logger.warning("dispute %s: %s did not take the evidence (%s)", dispute_id, dispute.connector, exc.code)
        if not raise_errors or not ended:
            # not ended: a later send of the same evidence (the merchant's repeat) is out or was
            # taken meanwhile; the answer is the dispute as it now is (pending, or under review)
            return Dispute.objects.get(pk=dispute_id)
        if isinstance(exc, PspUnavailableError):
            raise DisputeEvidencePspUnavailableError() from None
        raise DisputeEvidenceNotSentError() from None
    dispute = _evidence_record(dispute_id=dispute_id, result=result, actor=actor, notify=not raise_errors)
    if result.outcome != Outcome.APPROVED and raise_errors:
        if result.refusal == EvidenceRefusal.PAST_DUE:
            raise DisputeEvidencePastDueError()
        raise DisputeClosedError()
    return dispute


@transaction.atomic(durable=True)
def _evidence_mismatch(*, dispute_id: str, note: str, notify: bool) -> Dispute:
    _, dispute = _dispute_locked(dispute_id)
    if dispute.status != DS.NEEDS_RESPONSE or dispute.evidence_submitted_at is not None:
        return dispute  # moved meanwhile (the PSP's webhook): nothing to flag
    return _evidence_end(dispute, error=f"{EVIDENCE_MISMATCH}: {note}", notify=notify)


def _evidence_end(dispute: Dispute, *, error: str, notify: bool) -> Dispute:
    """Nothing pending any more, `error` kept (masked) in `evidence_error`; `notify`: the merchant
    learns of it by `dispute.updated` when evidence was pending (recovery's resend)."""
    was_pending = dispute.evidence_pending_at is not None
    dispute.evidence_pending_at = None
    dispute.evidence_next_send_at = None
    dispute.evidence_error = mask_text(error)[:200]
    dispute.save()
    if notify and was_pending:
        _emit_dispute(dispute, "dispute.updated")
    return dispute


@transaction.atomic(durable=True)
def _evidence_not_taken(*, dispute_id: str, pending_at: dt.datetime, note: str) -> bool:
    """The first send was not taken: nothing pending any more, unless the evidence was taken or
    sent again (its pending time moved) meanwhile. Returns whether it ended the pending evidence."""
    return bool(Dispute.objects.filter(
        pk=dispute_id, evidence_submitted_at__isnull=True, evidence_pending_at=pending_at
    ).update(evidence_pending_at=None, evidence_next_send_at=None, evidence_error=note[:200], updated_at=now()))


@transaction.atomic(durable=True)
def _evidence_record(*, dispute_id: str, result: DisputeEvidenceResult, actor: str, notify: bool) -> Dispute:
    """The PSP's answer: taken -> under_review (if the dispute still needs a response); refused ->
    nothing pending, the refusal kept in `evidence_error`. `notify`: the answer came outside the
    merchant's request (recovery's resend of pending evidence), so the merchant learns of it by
    the event `dispute.updated` (the dispute object, with `evidence_error` when refused)."""
    payment, dispute = _dispute_locked(dispute_id)
    if result.outcome == Outcome.APPROVED:
        moved = transition(dispute, "submit_evidence", payment=payment, actor=actor, text=dispute.evidence_text,
                           at=now(), data={"psp_reference": result.psp_reference or ""})
        if not moved:
            dispute.evidence_pending_at = None  # moved meanwhile (the PSP's webhook): nothing to wait for
            dispute.evidence_next_send_at = None
        dispute.save()
        if moved and notify:
            _emit_dispute(dispute, "dispute.updated")
        logger.info("dispute %s: evidence taken by %s (%s)", dispute_id, dispute.connector, result.psp_reference)
        return dispute
    refusal = result.refusal.value if result.refusal else "refused"
    _evidence_end(dispute, error=f"{refusal}: {result.message}", notify=notify)
    logger.warning("dispute %s: %s refused the evidence: %s", dispute_id, dispute.connector, refusal)
    return dispute


def dispute_evidence_recover_due(*, limit: int = 200, older_than: dt.timedelta | None = None,
                                 payment_id: str | None = None, force: bool = False) -> int:
    """Send again every evidence whose PSP answer is unknown (sent before `older_than` ago, default
    PAYMENTS_STARTED_GRACE_SECONDS: its first call may still be running), with the same key: the
    PSP takes it once. Each is resent on the attempts' recovery schedule (`recovery_delay`: 15 s,
    1 m, 3 m, 1 h, then daily; `force`: all of them now); past PAYMENTS_RECOVERY_MAX_INQUIRIES
    resends it is logged as an error and the stuck sweeper flags it for support
    (payments/services/stuck.py, `dispute.evidence_pending`). `payment_id`: that payment's only.
    Run by recovery (`payment_recover`, `recovery_run`). Returns how many were sent."""
    if older_than is None:
        older_than = dt.timedelta(seconds=setting("PAYMENTS_STARTED_GRACE_SECONDS", 60))
    at = now()
    due = Dispute.objects.filter(status=DS.NEEDS_RESPONSE, evidence_pending_at__lte=at - older_than)
    if payment_id is not None:
        due = due.filter(payment_id=payment_id)
    if not force:
        due = due.filter(Q(evidence_next_send_at__isnull=True) | Q(evidence_next_send_at__lte=at))
    sent = 0
    for dispute_id in due.order_by("evidence_pending_at").values_list("pk", flat=True)[:limit]:
        dispute_evidence_resend(dispute_id=dispute_id)
        sent += 1
    return sent


def dispute_evidence_resend(*, dispute_id: str) -> Dispute:
    """Recovery's resend of pending evidence (same key); still pending after it (no answer, or
    the PSP down): the next resend is scheduled."""
    dispute = _evidence_send(dispute_id=dispute_id, actor="system:recovery", raise_errors=False)
    if dispute.status == DS.NEEDS_RESPONSE and dispute.evidence_pending_at is not None:
        _evidence_reschedule(dispute_id=dispute_id, pending_at=dispute.evidence_pending_at)
    return dispute


@transaction.atomic(durable=True)
def _evidence_reschedule(*, dispute_id: str, pending_at: dt.datetime) -> None:
    """Count one more resend of the evidence pending since `pending_at` and schedule the next one,
    under the payment's lock: two resends at once (recovery's run and an operator's recovery of
    the payment) count two. Nothing when that evidence is no longer pending (taken, decided or
    sent again meanwhile)."""
    _, dispute = _dispute_locked(dispute_id)
    if dispute.status != DS.NEEDS_RESPONSE or dispute.evidence_pending_at != pending_at:
        return
    sends = dispute.evidence_sends + 1
    if sends == setting("PAYMENTS_RECOVERY_MAX_INQUIRIES", 9):
        logger.error("dispute %s: evidence still without the PSP's answer after %s resends: support must look",
                     dispute_id, sends)
    dispute.evidence_sends = sends
    dispute.evidence_next_send_at = now() + recovery_delay(sends)
    dispute.save(update_fields=["evidence_sends", "evidence_next_send_at", "updated_at"])
