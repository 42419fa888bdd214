"""Refunds: partial and several, never above what was captured, failures (also asynchronous)
handled. The amount is reserved under the payment lock when the refund is created (a `pending`
refund counts against what is left), so racing refunds can never exceed the captured amount;
the ledger posts only when the PSP confirms the refund."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.db import transaction
from django.db.models import Sum

from ledger.selectors import journal_list_for_references
from ledger.types import Accounts
from payera.core.db import outside_transaction
from payera.core.errors import InvalidRequestError, NotFoundError
from payera.core.money import currency_normalize
from payera.idempotency.services import idempotency_resource_record
from payera.merchants.models import Merchant
from payments.locks import payment_lock
from payments.method_types import method_spec
from payments.models import AS, PS, REFUND_NOT_AT_PSP, Capture, OperationStatus, Payment, Refund
from payments.postings import refund_fee_back, refund_fee_share, refund_journals, refund_reversal_journals
from payments.services.booking_sync import (
    booking_escrow_refund_ahead,
    booking_escrow_refund_failed,
    booking_escrow_refund_reversed,
    booking_guard,
    payment_has_booking,
    refund_in_escrow,
)
from payments.services.common import (
    PaymentStateError,
    emit,
    emit_refund,
    inflight_claim,
    now,
    operation_for_outcome,
    post,
    setting,
    transition,
)
from psp_adapters.errors import PspError
from psp_adapters.port import Decline, Outcome, PspReference, RefundRequest
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")


class RefundNotFoundError(NotFoundError):
    default_message = "No such refund."


class RefundExceedsCapturedError(InvalidRequestError):
    code = "amount_too_large"


def refund_create(*, merchant: Merchant, payment_id: str, amount: int | None = None, reason: str = "",
                  actor: str = "api", for_booking: bool = False, currency: str | None = None,
                  on_begin: Callable[[Refund], None] | None = None) -> Refund:
    """A booking's payment is refunded through its booking until the booking is completed
    (`for_booking`: the refund comes out of escrow). `on_begin(refund)` runs inside the
    transaction that inserts the refund, before the PSP call: a caller binds the refund to what
    asked for it there (both commit or neither does), or raises to refuse it. `currency`, when
    given, must be the payment's (`amount` is in its minor unit): any other is 400."""
    refund = _refund_begin(merchant=merchant, payment_id=payment_id, amount=amount, reason=reason,
                           for_booking=for_booking, on_begin=on_begin, currency=currency)
    attempt = refund.attempt
    result, error = None, None
    try:
        with outside_transaction():
            result = get_adapter(attempt.connector).refund(RefundRequest(
                payment=PspReference(attempt.id, attempt.psp_reference or None), reference=refund.id,
                amount=refund.amount, currency=refund.currency, reason=reason,
            ))
    except PspError as exc:
        error = exc
    refund_record_outcome(
        refund_id=refund.id, outcome=result.outcome if result else None,
        psp_reference=(result.psp_reference or "") if result else "", decline=result.decline if result else None,
        error=error, actor=actor, release=True,
    )
    return Refund.objects.get(pk=refund.id)


@transaction.atomic(durable=True)
def _refund_begin(*, merchant: Merchant, payment_id: str, amount: int | None, reason: str,
                  for_booking: bool = False, on_begin: Callable[[Refund], None] | None = None,
                  currency: str | None = None) -> Refund:
    try:
        payment = payment_lock(payment_id) if isinstance(payment_id, str) else None
    except Payment.DoesNotExist:
        payment = None
    if payment is None or payment.merchant_id != merchant.id:
        raise NotFoundError("No such payment.", param="payment")
    if not for_booking:
        booking_guard(payment, "refund")
    if payment.status != PS.SUCCEEDED or payment.amount_captured <= 0:
        raise PaymentStateError("Only a captured payment can be refunded.", param="payment")
    if currency is not None and currency_normalize(currency) != payment.currency:
        raise InvalidRequestError(
            f"The payment is in {payment.currency}: a refund is in the payment's currency, not {currency!r}.",
            param="currency", code="currency_mismatch",
        )
    if payment.payment_method_id and not method_spec(payment.payment_method.type).refundable:
        raise InvalidRequestError(f"A {payment.payment_method.type} payment cannot be refunded.", param="payment",
                                  code="payment_method_not_refundable")
    reserved = payment.refunds.exclude(status=OperationStatus.FAILED).aggregate(s=Sum("amount"))["s"] or 0
    # money a dispute (chargeback, returned debit) already took back cannot be refunded again
    left = payment.amount_captured - reserved - payment.amount_disputed
    if amount is None:
        amount = left
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        if left <= 0:
            raise RefundExceedsCapturedError("This payment has been refunded in full.", param="amount")
        raise InvalidRequestError("amount must be a positive integer.", param="amount")
    if amount > left:
        raise RefundExceedsCapturedError(
            f"Refund amount ({amount}) is greater than what is left to refund ({left}).", param="amount"
        )
    attempt = payment.attempts.filter(status=AS.CAPTURED).order_by("-sequence").first()
    if attempt is None:
        raise PaymentStateError("This payment has no captured authorization.", param="payment")
    inflight_claim(payment, "refund")
    payment.save()
    refund = Refund(merchant_id=payment.merchant_id, payment=payment, attempt=attempt, amount=amount,
                    currency=payment.currency, reason=(reason or "")[:64],
                    next_inquiry_at=now() + dt.timedelta(seconds=setting("PAYMENTS_PENDING_INQUIRY_SECONDS", 60)))
    refund.save(force_insert=True)
    idempotency_resource_record(resource=refund.id)  # a retry after a crash answers this refund
    if on_begin is not None:
        on_begin(refund)
    return refund


def _fee_returned(payment: Payment) -> int:
    """The fee already returned with the payment's succeeded refunds, as the ledger posted it
    (`refund_fee:<re>`): where the running total of `amount_refunded` stands in fees."""
    refs = [f"refund_fee:{pk}" for pk in
            payment.refunds.filter(status=OperationStatus.SUCCEEDED).values_list("pk", flat=True)]
    if not refs:
        return 0
    return sum(abs(e.amount) for j in journal_list_for_references(references=refs) for e in j.entries.all()) // 2


def _refund_reverse(payment: Payment, refund: Refund, *, decline: Decline | None, actor: str) -> None:
    """The PSP reports a refund it had reported succeeded as failed (the shopper's bank sent it
    back): the PSP owes the merchant that money again, so the refund is `failed`, it no longer
    counts in `amount_refunded` (it may be refunded again), its journals are mirrored
    (`refund_reversal:<re>`, and `refund_fee_reversal:<re>` for the fee share it returned, read
    from the ledger) and the merchant is told (`refund.failed`). The money goes back to the
    merchant's pending balance; a refund that came out of a booking's escrow (its journal says so)
    goes back into escrow while the booking is still confirmed, and its booking's counters follow
    (`booking_sync.booking_escrow_refund_reversed`)."""
    refs = (f"refund:{refund.id}", f"refund_fee:{refund.id}")
    posted = {j.reference: j for j in journal_list_for_references(references=refs)}
    if refs[0] not in posted:  # pragma: no cover - a succeeded refund is posted in its transition's block
        logger.error("refund %s is succeeded without its journal: not reversed", refund.id)
        return
    fee_journal = posted.get(refs[1])
    fee_back = sum(abs(e.amount) for e in fee_journal.entries.all()) // 2 if fee_journal else 0
    escrow_account = Accounts.merchant_escrow(payment.merchant_id, refund.currency)
    from_escrow = any((e.account.owner, e.account.code, e.account.currency) == (
        escrow_account.owner, escrow_account.code, escrow_account.currency) for e in posted[refs[0]].entries.all())
    if not transition(refund, "mark_reversed", payment=payment, actor=actor,
                      code=decline.code.value if decline else "refund_reversed"):
        return
    refund.save()
    payment.amount_refunded -= refund.amount
    payment.save()
    emit_refund(refund, "refund.failed")
    into_escrow = from_escrow and booking_escrow_refund_reversed(payment, refund, taken=refund.amount - fee_back,
                                                                 actor=actor)
    logger.warning("refund %s of %s (%s %s) failed at %s after it had succeeded: reversed (%s)", refund.id,
                   payment.id, refund.amount, refund.currency, refund.attempt.connector, actor)
    post(refund_reversal_journals(refund_id=refund.id, merchant_id=payment.merchant_id,
                                  connector=refund.attempt.connector, amount=refund.amount, fee_back=fee_back,
                                  currency=refund.currency, escrow=into_escrow),
         occurred_at=now(), metadata={"payment": payment.id, "refund": refund.id})


def _refund_found_allowed(payment: Payment, refund: Refund) -> bool:
    """A failed refund the PSP reports done: it happened (the shopper has the money) if recovery
    failed it only because the PSP did not know it yet (`REFUND_NOT_AT_PSP`: its request was still
    on its way, the PSP's inquiry lagged); any other failure (a refusal) stays. Recorded only if it
    fits in what was captured (the merchant may have refunded the freed amount again and the PSP
    taken both): otherwise it is for operations (logged as an error), never a broken balance."""
    if refund.failure_code != REFUND_NOT_AT_PSP:
        logger.info("stale refund outcome for %s (failed %s) ignored", refund.id, refund.failure_code)
        return False
    if payment_has_booking(payment) is not False:
        # its booking already released what it would have taken out of escrow (booking.refund_failed)
        logger.error("refund %s of booking payment %s was failed as unknown at the PSP, which now reports it done: "
                     "operations must look (the escrow was released when it failed)", refund.id, payment.id)
        return False
    if payment.amount_refunded + refund.amount > payment.amount_captured:
        logger.error("refund %s of %s was failed as unknown at the PSP, which now reports it done, but %s more "
                     "refunded would exceed the %s captured (%s refunded): operations must look", refund.id,
                     payment.id, refund.amount, payment.amount_captured, payment.amount_refunded)
        return False
    logger.warning("refund %s of %s, failed as unknown at the PSP, is reported done by it: recorded", refund.id,
                   payment.id)
    return True


def _refund_succeed(payment: Payment, refund: Refund, *, psp_reference: str, actor: str) -> None:
    """The PSP did the refund (pending, or failed as unknown at the PSP): it is `succeeded`, counts
    in `amount_refunded`, the merchant is told and its journals are posted (`refund:<re>`,
    `refund_fee:<re>` for the fee share it returns). The caller holds the payment lock."""
    capture = Capture.objects.filter(attempt=refund.attempt, status=OperationStatus.SUCCEEDED).first()
    escrow = refund_in_escrow(refund)
    fee_back = 0
    if capture is not None and escrow:
        # a booking's refund out of escrow: the share the escrow keeps for it, whatever settled
        # before it (a merchant refund out of pending may, once the booking is completed)
        fee_back = refund_fee_share(fee=capture.fee, captured=payment.amount_captured, refunded_before=0,
                                    refund=refund.amount)
    elif capture is not None:
        fee_back = refund_fee_back(fee=capture.fee, captured=payment.amount_captured,
                                   refunded_before=payment.amount_refunded,
                                   returned_before=_fee_returned(payment) if payment.amount_refunded else 0,
                                   refund=refund.amount,
                                   escrow_refund_ahead=booking_escrow_refund_ahead(payment, refund))
    verb = "mark_found" if refund.status == OperationStatus.FAILED else "mark_succeeded"
    transition(refund, verb, payment=payment, actor=actor, psp_reference=psp_reference)
    refund.save()
    payment.amount_refunded += refund.amount
    payment.save()
    emit_refund(refund, "refund.succeeded")
    emit(payment, "payment.refunded")
    # last in the transaction: the ledger holds the merchant's account row until the commit
    post(
        refund_journals(refund_id=refund.id, merchant_id=payment.merchant_id, connector=refund.attempt.connector,
                        amount=refund.amount, fee_back=fee_back, currency=refund.currency,
                        escrow=escrow),
        occurred_at=now(), metadata={"payment": payment.id, "refund": refund.id},
    )


@transaction.atomic(durable=True)
def refund_record_outcome(*, refund_id: str, outcome: Outcome | None, psp_reference: str = "",
                          decline: Decline | None = None, error: PspError | None = None, actor: str,
                          release: bool = False, returned: bool = False) -> None:
    """A refund's outcome from the answer, a webhook or an inquiry. Idempotent and order-proof:
    a refund already failed ignores later news, and so does a succeeded one, except a refusal: the
    PSP failed it after it had succeeded, and it is reversed (`_refund_reverse`). `returned`: the
    PSP says the refusal is a return (it had done the refund, then took it back): a refund Payera
    never saw succeed (its webhooks lost) is recorded succeeded, then reversed, as if it had heard
    both, rather than failed as refused (the PSP did pay it out, and reports both)."""
    returned = returned and error is None and outcome == Outcome.DECLINED
    found = operation_for_outcome(Refund, refund_id, inflight="refund", release=release,
                                  succeeded_too=error is None and outcome == Outcome.DECLINED,
                                  failed_too=error is None and (outcome == Outcome.APPROVED or returned))
    if found is None:
        return
    payment, refund = found
    if refund.status == OperationStatus.SUCCEEDED:  # only a refusal gets here: the PSP took it back
        _refund_reverse(payment, refund, decline=decline, actor=actor)
        return
    if refund.status == OperationStatus.FAILED and not _refund_found_allowed(payment, refund):
        return
    if returned:
        logger.warning("refund %s of %s was done and returned at %s before Payera heard it succeed: recorded "
                       "succeeded, then reversed", refund.id, payment.id, refund.attempt.connector)
        _refund_succeed(payment, refund, psp_reference=psp_reference, actor=actor)
        _refund_reverse(payment, refund, decline=decline, actor=actor)
        return
    if error is not None:
        if not error.may_have_processed:
            transition(refund, "mark_failed", payment=payment, actor=actor, code=error.code)
            refund.save()
            emit_refund(refund, "refund.failed")
            booking_escrow_refund_failed(payment, refund, actor=actor)
        return  # unknown: stays pending, recovery asks the PSP
    if outcome == Outcome.APPROVED:
        _refund_succeed(payment, refund, psp_reference=psp_reference, actor=actor)
    elif outcome == Outcome.DECLINED:
        transition(refund, "mark_failed", payment=payment, actor=actor,
                   code=decline.code.value if decline else "operation_rejected")
        refund.save()
        emit_refund(refund, "refund.failed")
        booking_escrow_refund_failed(payment, refund, actor=actor)
