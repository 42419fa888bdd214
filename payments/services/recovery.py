"""Recovery of unknown outcomes: ask the PSP (status inquiry), never decide by time alone.

Attempts in `unknown` (a timeout or an unreadable answer), `started` past a grace period (a crash
between committing the attempt and recording the answer), `pending` without a webhook and
`requires_action` for long are inquired on a schedule (15 s, 1 m, 3 m, 1 h, then daily; after
PAYMENTS_RECOVERY_MAX_INQUIRIES the attempt is flagged `needs_attention` for operations, and
still asked daily). Pending captures and refunds are resolved from the authorization's
operations in the same inquiry; dispute evidence whose PSP answer is unknown is sent again with
its key (on the same schedule). `manage.py run_recovery` runs it now, for everything open;
`payment_recover` runs the same step for one payment (the admin's "Re-run recovery"). An
automatic-capture payment left `requires_capture` (its capture after the authorization failed or
was never sent) is captured again on the same schedule. A confirmed booking whose cancel or
partial completion died after its refund out of escrow is recorded as that request would have
ended (`booking_recover`).
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial

from django.db import transaction
from django.db.models import Q

from payera.core.db import outside_transaction
from payments.locks import payment_lock
from payments.models import (
    AS,
    NOT_AT_PSP,
    PS,
    REFUND_NOT_AT_PSP,
    Capture,
    CaptureMethod,
    OperationStatus,
    Payment,
    PaymentAttempt,
    Refund,
)
from payments.services.bookings import booking_recover, bookings_crashed
from payments.services.common import emit, inflight_release, now, recovery_delay, setting, transition
from payments.services.disputes import (
    DisputeAttemptUnknownError,
    DisputeEventRefusedError,
    dispute_apply_event,
    dispute_event_from_inquiry,
    dispute_evidence_recover_due,
)
from payments.services.inquiry import InquiryReferenceMismatchError, attempt_inquire
from payments.services.payments import (
    _cancel_record,
    attempt_record_outcome,
    capture_record_outcome,
    confirmation_abandoned_end,
    confirmations_abandoned,
    payment_auto_capture_if_needed,
)
from payments.services.refunds import refund_record_outcome
from psp_adapters.errors import PspError, PspReferenceNotFoundError
from psp_adapters.port import (
    AuthorizeResult,
    OperationKind,
    Outcome,
    PspReference,
    PspState,
)
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")

RECOVERABLE = [AS.UNKNOWN, AS.STARTED, AS.PENDING, AS.REQUIRES_ACTION]


def recovery_run(*, force: bool = False, limit: int = 500) -> dict[str, int]:
    """Inquire every due attempt (all open ones with `force`, except `started` ones still within
    their grace period, whose PSP call may be running right now)."""
    return _recover(payment_id=None, force=force, limit=limit)


def payment_recover(*, payment_id: str) -> dict[str, int]:
    """Recovery for one payment now (operations' "Re-run recovery"): the same step as
    `recovery_run`, for everything of the payment that is open whatever its schedule — its
    attempts, pending captures and refunds, a crashed cancel and its disputes' pending evidence —
    except what is younger than the grace period (its request may be running right now)."""
    return _recover(payment_id=payment_id, force=True, limit=500)


def _recover(*, payment_id: str | None, force: bool, limit: int) -> dict[str, int]:
    """The recovery step, for every payment (`payment_id` None) or one."""
    at = now()
    grace = at - dt.timedelta(seconds=setting("PAYMENTS_STARTED_GRACE_SECONDS", 60))
    of = {} if payment_id is None else {"payment_id": payment_id}
    qs = PaymentAttempt.objects.filter(status__in=RECOVERABLE, **of).exclude(status=AS.STARTED, created_at__gt=grace)
    if not force:
        qs = qs.filter(Q(next_inquiry_at__lte=at) | Q(next_inquiry_at__isnull=True))
    counts = {"attempts": 0, "resolved": 0, "captures": 0, "refunds": 0, "cancels": 0}
    for attempt_id in qs.order_by("next_inquiry_at", "sequence").values_list("pk", flat=True)[:limit]:
        counts["attempts"] += 1
        if attempt_recover(attempt_id=attempt_id):
            counts["resolved"] += 1
    # a confirmation that stopped between two attempts of its cascade: no open attempt to ask about
    for abandoned_id in confirmations_abandoned(older_than=grace, payment_id=payment_id):
        if confirmation_abandoned_end(payment_id=abandoned_id):
            counts["resolved"] += 1
    # operations younger than the grace period may have their PSP call running right now
    ops = Q(status=OperationStatus.PENDING, created_at__lt=grace, **of)
    if not force:
        ops &= Q(next_inquiry_at__lte=at) | Q(next_inquiry_at__isnull=True)
    for capture_id in Capture.objects.filter(ops).values_list("pk", flat=True)[:limit]:
        counts["captures"] += 1
        operation_recover(kind=OperationKind.CAPTURE, operation_id=capture_id)
    for refund_id in Refund.objects.filter(ops).values_list("pk", flat=True)[:limit]:
        counts["refunds"] += 1
        operation_recover(kind=OperationKind.REFUND, operation_id=refund_id)
    # a cancel has no operation row: its crashed request shows as a `cancel` claim past the grace
    cancels = Payment.objects.filter(inflight="cancel", inflight_at__lt=grace)
    if payment_id is not None:
        cancels = cancels.filter(pk=payment_id)
    for cancel_payment_id in cancels.values_list("pk", flat=True)[:limit]:
        counts["cancels"] += 1
        cancel_recover(payment_id=cancel_payment_id)
    # a booking's cancel or partial completion that died after its refund out of escrow (after
    # the refund step above, which resolves that refund first): recorded as it would have ended
    counts["bookings"] = 0
    for booking_id in bookings_crashed(older_than=grace, payment_id=payment_id)[:limit]:
        if booking_recover(booking_id=booking_id, older_than=grace):
            counts["bookings"] += 1
    # an automatic-capture payment left authorized: its capture failed or was never sent
    autos = Payment.objects.filter(status=PS.REQUIRES_CAPTURE, capture_method=CaptureMethod.AUTOMATIC,
                                   authorized_at__lt=grace)
    if payment_id is not None:
        autos = autos.filter(pk=payment_id)
    counts["auto_captures"] = 0
    for auto_payment_id in autos.order_by("authorized_at").values_list("pk", flat=True)[:limit]:
        if _auto_capture_due(payment_id=auto_payment_id, at=at, force=force):
            counts["auto_captures"] += 1
            payment_auto_capture_if_needed(payment_id=auto_payment_id)
    # dispute evidence sent without a known answer: sent again with the same key (taken once)
    counts["evidence"] = dispute_evidence_recover_due(limit=limit, payment_id=payment_id, force=force)
    return counts


def _auto_capture_due(*, payment_id: str, at: dt.datetime, force: bool) -> bool:
    """Whether recovery captures an automatic-capture payment still `requires_capture` now. Its
    capture after the authorization (`payment_auto_capture_if_needed`) failed — the PSP unreachable
    or refusing for a moment — or was never sent (a crash): nothing else tries again, and the
    authorization expiry would void it, the sale lost. Not while a capture is pending (the capture
    path asks the PSP about that one); after failed captures, on the recovery schedule from the
    last one (15 s, 1 m, 3 m, 1 h, then daily)."""
    captures = list(Capture.objects.filter(payment_id=payment_id).values_list("status", "updated_at"))
    if any(status == OperationStatus.PENDING for status, _ in captures):
        return False
    failed = [updated for status, updated in captures if status == OperationStatus.FAILED]
    if not failed or force:
        return True
    return max(failed) + recovery_delay(len(failed) - 1) <= at


@transaction.atomic(durable=True)
def _cancel_claim_release(*, payment_id: str) -> None:
    payment = payment_lock(payment_id)
    if payment.inflight == "cancel":
        inflight_release(payment)
        payment.save()


def cancel_recover(*, payment_id: str, release: bool = True) -> str:
    """A cancel under way — its void answered pending (an asynchronous PSP), timed out, or its
    request crashed between its claim and the void's outcome — or a void's webhook: ask the PSP.
    A voided authorization cancels the payment ("voided"); a captured one (the PSP's own capture)
    is recorded, which ends the cancel (`payment.cancel_failed`); our void still pending at the PSP keeps
    the claim ("pending"); our void refused by the PSP releases it and tells the merchant
    (`payment.cancel_failed`, "refused"); otherwise the void never arrived and the claim is
    released ("released": the merchant may cancel again) -- unless `release` is False (asked right
    after the timeout, when the void may still be on its way: recovery asks again after the grace
    period; "unknown" when the PSP could not say)."""
    from payments.services.payments import void_reference

    attempt = PaymentAttempt.objects.filter(
        payment_id=payment_id, status__in=[AS.AUTHORIZED, AS.REQUIRES_ACTION]
    ).order_by("-sequence").first()
    if attempt is None:  # resolved meanwhile (e.g. by the void's webhook): only the claim is left
        _cancel_claim_release(payment_id=payment_id)
        return "resolved"
    number = attempt.void_number  # the current void: the one a cancel under way sent
    try:
        result = attempt_inquire(attempt)
    except InquiryReferenceMismatchError:
        # the answer is about another authorization (logged as an error by `attempt_inquire`):
        # whether OUR void arrived is unknown, so the claim stays (asked again; operations look)
        return "unknown"
    except PspError as exc:
        logger.warning("inquiry for the cancel of %s failed: %s", payment_id, exc)
        return "unknown"
    voided = result.state == PspState.VOIDED
    if result.state == PspState.CAPTURED and attempt.status == AS.AUTHORIZED:
        # the PSP captured the authorization on its own while our void was under way: the capture
        # is recorded (as the settlement inquiry records one), which ends the cancel and its claim
        # (`payment.cancel_failed`, once) and confirms a booking whose expiry was voiding it; the
        # void's refusal below only moves the void numbering on
        attempt_record_outcome(attempt_id=attempt.id, result=result, actor="system:recovery", source="inquiry")
    # our current void only: an earlier void of the attempt was refused (that is why there is a
    # later one), and its refusal says nothing about the cancel under way
    ours = [op for op in result.operations
            if op.kind == OperationKind.VOID and op.reference == void_reference(attempt.id, number)]
    if not voided and ours and ours[0].outcome == Outcome.PENDING:
        return "pending"  # taken by the PSP, its outcome still to come: the claim stays
    refused = not voided and bool(ours) and ours[0].outcome == Outcome.DECLINED
    if not voided and not refused and not release:
        return "unknown"
    _cancel_record(payment_id=payment_id, attempt_id=attempt.id, outcome=Outcome.APPROVED if voided else None,
                   error=None, actor="system:recovery", void_number=number, refused_later=refused)
    return "voided" if voided else "refused" if refused else "released"


def attempt_recover(*, attempt_id: str) -> bool:
    """Ask the PSP about one attempt and record the answer. True when the attempt is resolved."""
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status not in RECOVERABLE:
        return True
    try:
        result = attempt_inquire(attempt)
    except PspReferenceNotFoundError:
        if attempt.status in (AS.STARTED, AS.UNKNOWN):
            _never_arrived(attempt_id=attempt_id)
            return True
        _reschedule(attempt_id=attempt_id, why="the PSP does not know the reference")
        return False
    except InquiryReferenceMismatchError as exc:
        # the PSP answered about another authorization (our stored pspReference is not this
        # attempt's): nothing is recorded, and asking by the same reference will not tell more,
        # so operations are asked to look at once (logged as an error by `attempt_inquire`)
        _reschedule(attempt_id=attempt_id, why=f"{exc.code}: {exc.message}", attention=True)
        return False
    except PspError as exc:
        _reschedule(attempt_id=attempt_id, why=f"{exc.code}: {exc.message}")
        return False
    if result.outcome in (Outcome.PENDING, Outcome.REQUIRES_ACTION) and attempt.status in (
        AS.PENDING, AS.REQUIRES_ACTION,
    ):
        _reschedule(attempt_id=attempt_id, why=f"still {result.outcome}")
        return False
    attempt_record_outcome(attempt_id=attempt_id, result=result, actor="system:recovery", source="inquiry")
    payment_auto_capture_if_needed(payment_id=attempt.payment_id)
    inquiry_operations_record(result)
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    if attempt.status in RECOVERABLE:
        _reschedule(attempt_id=attempt_id, why=f"still {attempt.status}")
        return False
    return True


@transaction.atomic(durable=True)
def _never_arrived(*, attempt_id: str) -> None:
    """The PSP has no record of the attempt: nothing was authorized. The payment fails (the
    shopper's CVC is gone, so no other connector is tried from here)."""
    attempt0_payment_id = PaymentAttempt.objects.values_list("payment_id", flat=True).get(pk=attempt_id)
    payment = payment_lock(attempt0_payment_id)
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    actor = "system:recovery"
    transition(attempt, "mark_failed", payment=payment, actor=actor, error="never arrived at the PSP (inquiry)",
               at=now())
    attempt.save()
    if transition(payment, "mark_failed", payment=payment, actor=actor, error={
        "code": "processing_error", "decline_code": None, "message": "The payment could not be processed.",
    }):
        emit(payment, "payment.failed")
    if payment.inflight == "confirm":
        inflight_release(payment)
    payment.save()


def _reschedule(*, attempt_id: str, why: str, attention: bool = False) -> None:
    attempt = PaymentAttempt.objects.get(pk=attempt_id)
    inquiries = attempt.inquiries + 1
    flag = attention or inquiries >= setting("PAYMENTS_RECOVERY_MAX_INQUIRIES", 9)
    if flag and not attempt.needs_attention:
        logger.error("attempt %s unresolved after %s inquiries (%s): operations must look", attempt_id, inquiries, why)
    PaymentAttempt.objects.filter(pk=attempt_id).update(
        inquiries=inquiries, next_inquiry_at=now() + recovery_delay(inquiries), needs_attention=flag,
        error=why[:255],
    )


def inquiry_operations_record(result: AuthorizeResult, *, release_for: str = "") -> None:
    """Record the operations' final outcomes; `release_for`: the operation (older than the grace
    period, so its request is gone) whose crashed request's in-flight claim is released too."""
    for op in result.operations:
        if op.outcome == Outcome.PENDING:
            continue
        if op.kind == OperationKind.CAPTURE and Capture.objects.filter(_capture_news(op.outcome),
                                                                        pk=op.reference).exists():
            capture_record_outcome(capture_id=op.reference, outcome=op.outcome, psp_reference=op.psp_reference or "",
                                   decline=op.decline, actor="system:recovery", release=op.reference == release_for)
        elif op.kind == OperationKind.REFUND and Refund.objects.filter(_refund_news(op.outcome, returned=op.returned),
                                                                       pk=op.reference).exists():
            refund_record_outcome(refund_id=op.reference, outcome=op.outcome, psp_reference=op.psp_reference or "",
                                  decline=op.decline, actor="system:recovery", release=op.reference == release_for,
                                  returned=op.returned)


def _capture_news(outcome: Outcome) -> Q:
    """The captures for which the PSP's `outcome` is news: pending ones; a failed one only because
    the PSP did not know it that the PSP now says done (it happened: recorded)."""
    news = Q(status=OperationStatus.PENDING)
    if outcome == Outcome.APPROVED:
        news |= Q(status=OperationStatus.FAILED, failure_code=NOT_AT_PSP)
    return news


def _refund_news(outcome: Outcome, *, returned: bool = False) -> Q:
    """The refunds for which the PSP's `outcome` is news: pending ones; a succeeded one the PSP now
    says failed (sent back: refund_record_outcome reverses it); a failed one only because the PSP
    did not know it that the PSP now says done, or done and returned since (it happened: recorded)."""
    news = Q(status=OperationStatus.PENDING)
    if outcome == Outcome.DECLINED:
        news |= Q(status=OperationStatus.SUCCEEDED)
    if outcome == Outcome.APPROVED or (outcome == Outcome.DECLINED and returned):
        news |= Q(status=OperationStatus.FAILED, failure_code=REFUND_NOT_AT_PSP)
    return news


def operation_recover(*, kind: OperationKind, operation_id: str) -> None:
    model = Capture if kind == OperationKind.CAPTURE else Refund
    op = model.objects.select_related("attempt").get(pk=operation_id)
    attempt = op.attempt
    try:
        result = attempt_inquire(attempt)
    except PspError as exc:
        logger.warning("inquiry for %s failed: %s", operation_id, exc)
        model.objects.filter(pk=operation_id).update(next_inquiry_at=now() + recovery_delay(1))
        return
    found = [o for o in result.operations if o.reference == operation_id]
    # the operation is older than the grace period: the request that claimed the payment for it
    # crashed, so its in-flight claim is released with the outcome (else it blocks the payment
    # until PAYMENTS_INFLIGHT_TIMEOUT)
    if not found:
        # the PSP never got the operation: it did not happen
        if kind == OperationKind.CAPTURE:
            capture_record_outcome(capture_id=operation_id, outcome=None, error=PspReferenceNotFoundError(
                "never arrived", connector=attempt.connector), actor="system:recovery", release=True)
        else:
            refund_record_outcome(refund_id=operation_id, outcome=None, error=PspReferenceNotFoundError(
                "never arrived", connector=attempt.connector), actor="system:recovery", release=True)
        return
    inquiry_operations_record(result, release_for=operation_id)
    model.objects.filter(pk=operation_id, status=OperationStatus.PENDING).update(
        next_inquiry_at=now() + recovery_delay(1)
    )


def attempt_settlement_inquire(*, attempt_id: str) -> bool:
    """A PSP settled something of this attempt that Payera does not show as done (reconciliation's
    "missing in Payera"; a lost webhook is the usual cause): ask the PSP now and record what it
    says, for the attempt and for its captures and refunds still pending. True when the PSP was
    asked and answered; False for an unknown attempt or a PSP error (nothing changes then)."""
    attempt = PaymentAttempt.objects.filter(pk=attempt_id).first()
    if attempt is None:
        return False
    if attempt.status in RECOVERABLE:  # the inquiry records the attempt and its operations
        attempt_recover(attempt_id=attempt_id)
        return True
    try:
        result = attempt_inquire(attempt)
    except PspError as exc:
        logger.warning("settlement inquiry for %s failed: %s", attempt_id, exc)
        return False
    inquiry_operations_record(result)
    if attempt.status == AS.AUTHORIZED and result.state == PspState.CAPTURED:
        # settled a capture of an authorization we hold authorized: a capture the PSP made on its
        # own (ours, listed by the PSP, were recorded just above) — recorded as the capture
        attempt_record_outcome(attempt_id=attempt_id, result=result, actor="system:recovery", source="settlement")
    return True


def dispute_settlement_inquire(*, attempt_id: str, psp_dispute_id: str) -> bool:
    """A PSP settled a chargeback, or a won dispute's reversal, of this attempt that Payera does not
    show (reconciliation's "missing in Payera": the dispute's webhook was lost or has not arrived
    yet): ask the PSP about that dispute and apply its answer as the dispute's webhook would be
    applied (`dispute_apply_event`: created once, the chargeback posted; moved to the PSP's status,
    a won dispute's money posted back). Idempotent with the webhooks, early or late: the dispute is
    one row per connector and PSP id, its transitions only go forward and its postings have their
    business references. A dispute whose capture Payera has not recorded yet asks about the attempt
    first (`attempt_settlement_inquire`). True when the PSP answered and its answer was applied;
    False for an unknown attempt, a dispute the PSP does not know on this attempt, or a PSP error
    (nothing changes then)."""
    attempt = PaymentAttempt.objects.filter(pk=attempt_id).only("id", "connector", "psp_reference").first()
    if attempt is None or not psp_dispute_id:
        return False
    try:
        with outside_transaction():
            found = get_adapter(attempt.connector).inquire_dispute(
                PspReference(attempt.id, attempt.psp_reference or None), psp_dispute_id
            )
    except PspError as exc:
        logger.warning("dispute inquiry %s of %s failed: %s", psp_dispute_id, attempt_id, exc.code)
        return False
    event = dispute_event_from_inquiry(found, event_id=f"inquiry:{found.dispute.psp_dispute_id}")
    apply = partial(dispute_apply_event, connector=attempt.connector, event=event, actor="system:recovery")
    try:
        note = apply()
    except DisputeEventRefusedError as exc:  # the PSP names money the payment never took: for people
        logger.error("dispute %s of %s by inquiry refused, raised to operations: %s", psp_dispute_id, attempt_id, exc)
        return False
    except DisputeAttemptUnknownError:  # its capture is not recorded yet: ask about the attempt, once
        try:
            note = apply() if attempt_settlement_inquire(attempt_id=attempt_id) else ""
        except DisputeAttemptUnknownError:
            note = ""
        if not note:
            logger.warning("dispute %s of %s: its capture is not recorded; not applied", psp_dispute_id, attempt_id)
            return False
    logger.info("dispute %s of %s by inquiry: %s", psp_dispute_id, attempt_id, note)
    return True
