"""The stuck-state sweeper: anything in a non-final state longer than its state's SLA is
re-driven (the same recovery path the scheduler uses: status inquiry, operation inquiry,
applying a stored webhook) and, when that did not move it, flagged for operations with the
reason (admin: Stuck items; dashboard panel). Never decides an outcome by time alone: a
re-drive asks the PSP; a flag asks a human.

Rules are data (`STUCK_RULES`); SLAs are the setting `PAYMENTS_STUCK_SLA_SECONDS`
(`"<object>.<state>": seconds`). A stuck object is re-driven at most once per SLA period.
`manage.py run_stuck_sweep` runs it now; beat runs it every 5 minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Max

from payments.models import (
    DS,
    PS,
    Capture,
    Dispute,
    InboxStatus,
    OperationStatus,
    Payment,
    PaymentAttempt,
    PaymentEvent,
    PspWebhook,
    Refund,
    StuckItem,
)
from payments.services.common import now, setting
from payments.services.disputes import EVIDENCE_MISMATCH, dispute_evidence_resend
from payments.services.recovery import RECOVERABLE, attempt_recover, cancel_recover, operation_recover
from payments.services.webhooks import psp_webhook_process
from psp_adapters.port import OperationKind

logger = logging.getLogger("payera.payments")

DEFAULT_SLAS = {
    "payment.processing": 15 * 60,
    "payment.requires_action": 60 * 60,
    "payment.in_review": 60 * 60,
    "capture.pending": 15 * 60,
    "refund.pending": 15 * 60,
    "webhook.received": 5 * 60,
    "dispute.evidence_pending": 15 * 60,
    "dispute.evidence_mismatch": 0,  # nothing to wait for: only a human can fix it
}


@dataclass(frozen=True)
class Candidate:
    object_id: str
    since: dt.datetime
    payment_id: str | None
    merchant_id: str | None


@dataclass(frozen=True)
class StuckRule:
    key: str  # "<object>.<state>", the SLA's name
    object_type: str
    state: str
    reason: str
    find: Callable[[dt.datetime], Iterator[Candidate]]  # objects in the state since before the cutoff
    current: Callable[[str], str | None]  # the object's state now (None: gone)
    redrive: Callable[[str], None] | None  # None: only a human can move it


# --- finding what is stuck -------------------------------------------------------------------
def _entered(object_type: str, ids: list[str], state: str) -> dict[str, dt.datetime]:
    """When each object last entered `state`, from the transition log."""
    rows = (PaymentEvent.objects.filter(object_type=object_type, object_id__in=ids, to_status=state)
            .values("object_id").annotate(at=Max("created_at")))
    return {r["object_id"]: r["at"] for r in rows}


def _payments(state: str, *, in_review: bool) -> Callable[[dt.datetime], Iterator[Candidate]]:
    def find(cutoff: dt.datetime) -> Iterator[Candidate]:
        qs = Payment.objects.filter(status=state, updated_at__lt=cutoff)
        qs = qs.exclude(review_reason="") if in_review else qs.filter(review_reason="")
        rows = list(qs.values_list("pk", "merchant_id", "created_at")[:500])
        entered = _entered("payment", [r[0] for r in rows], state)
        for pk, merchant_id, created in rows:
            since = entered.get(pk, created)
            if since < cutoff:
                yield Candidate(pk, since, pk, merchant_id)
    return find


def _operations(model: type[Capture] | type[Refund]) -> Callable[[dt.datetime], Iterator[Candidate]]:
    def find(cutoff: dt.datetime) -> Iterator[Candidate]:
        rows = model.objects.filter(status=OperationStatus.PENDING, created_at__lt=cutoff).values_list(
            "pk", "payment_id", "payment__merchant_id", "created_at")[:500]
        for pk, payment_id, merchant_id, created in rows:
            yield Candidate(pk, created, payment_id, merchant_id)
    return find


def _webhooks(cutoff: dt.datetime) -> Iterator[Candidate]:
    rows = list(PspWebhook.objects.filter(status=InboxStatus.RECEIVED, received_at__lt=cutoff).values_list(
        "pk", "reference", "received_at")[:500])
    owners = dict(PaymentAttempt.objects.filter(pk__in=[r[1] for r in rows]).values_list("pk", "payment_id"))
    merchants = dict(Payment.objects.filter(pk__in=owners.values()).values_list("pk", "merchant_id"))
    for pk, reference, received in rows:
        payment_id = owners.get(reference)
        yield Candidate(str(pk), received, payment_id, merchants.get(payment_id))


def _evidence_pending(cutoff: dt.datetime) -> Iterator[Candidate]:
    """Dispute evidence still without the PSP's answer after recovery's resends ran out
    (PAYMENTS_RECOVERY_MAX_INQUIRIES, as an attempt's inquiries do)."""
    rows = Dispute.objects.filter(
        status=DS.NEEDS_RESPONSE, evidence_pending_at__lt=cutoff,
        evidence_sends__gte=setting("PAYMENTS_RECOVERY_MAX_INQUIRIES", 9),
    ).values_list("pk", "payment_id", "merchant_id", "evidence_pending_at")[:500]
    for pk, payment_id, merchant_id, since in rows:
        yield Candidate(pk, since, payment_id, merchant_id)


def _evidence_mismatch(cutoff: dt.datetime) -> Iterator[Candidate]:
    """Evidence the PSP answered is not on this payment's dispute (`dispute_mismatch`): Payera's
    dispute id and the PSP's disagree; nothing is pending and a resend cannot fix it."""
    rows = Dispute.objects.filter(
        status=DS.NEEDS_RESPONSE, evidence_pending_at__isnull=True, evidence_error__startswith=EVIDENCE_MISMATCH,
        updated_at__lte=cutoff,
    ).values_list("pk", "payment_id", "merchant_id", "updated_at")[:500]
    for pk, payment_id, merchant_id, since in rows:
        yield Candidate(pk, since, payment_id, merchant_id)


def _evidence_state(pk: str) -> str | None:
    row = Dispute.objects.filter(pk=pk).values_list("status", "evidence_pending_at", "evidence_error").first()
    if row is None:
        return None
    status, pending, error = row
    if status == DS.NEEDS_RESPONSE and pending:
        return "evidence_pending"
    if status == DS.NEEDS_RESPONSE and error.startswith(EVIDENCE_MISMATCH):
        return "evidence_mismatch"
    return status


# --- the object's state now --------------------------------------------------------------------
def _payment_state(*, in_review: bool) -> Callable[[str], str | None]:
    def current(pk: str) -> str | None:
        row = Payment.objects.filter(pk=pk).values_list("status", "review_reason").first()
        if row is None:
            return None
        status, review = row
        return "in_review" if (review and status == PS.PROCESSING) else status
    return current


def _operation_state(model: type[Capture] | type[Refund]) -> Callable[[str], str | None]:
    return lambda pk: model.objects.filter(pk=pk).values_list("status", flat=True).first()


def _webhook_state(pk: str) -> str | None:
    return PspWebhook.objects.filter(pk=int(pk)).values_list("status", flat=True).first()


# --- re-driving --------------------------------------------------------------------------------
def _redrive_payment(payment_id: str) -> None:
    """Ask the PSP about every open attempt of the payment (and a crashed cancel)."""
    for attempt_id in PaymentAttempt.objects.filter(payment_id=payment_id, status__in=RECOVERABLE).values_list(
        "pk", flat=True
    ):
        attempt_recover(attempt_id=attempt_id)
    if Payment.objects.filter(pk=payment_id, inflight="cancel").exists():
        cancel_recover(payment_id=payment_id)


STUCK_RULES: list[StuckRule] = [
    StuckRule("payment.processing", "payment", PS.PROCESSING,
              "sent to the PSP and the outcome is still unknown; inquiries have not settled it",
              _payments(PS.PROCESSING, in_review=False), _payment_state(in_review=False), _redrive_payment),
    StuckRule("payment.requires_action", "payment", PS.REQUIRES_ACTION,
              "the shopper has not finished 3-D Secure or the bank page; the PSP still waits for them",
              _payments(PS.REQUIRES_ACTION, in_review=False), _payment_state(in_review=False), _redrive_payment),
    StuckRule("payment.in_review", "payment", "in_review",
              "held for review (the PSP reported another amount or currency): a human must refund or void it",
              _payments(PS.PROCESSING, in_review=True), _payment_state(in_review=True), None),
    StuckRule("capture.pending", "capture", OperationStatus.PENDING,
              "capture sent; the PSP has not confirmed it",
              _operations(Capture), _operation_state(Capture),
              lambda pk: operation_recover(kind=OperationKind.CAPTURE, operation_id=pk)),
    StuckRule("refund.pending", "refund", OperationStatus.PENDING,
              "refund sent; the PSP has not confirmed it",
              _operations(Refund), _operation_state(Refund),
              lambda pk: operation_recover(kind=OperationKind.REFUND, operation_id=pk)),
    StuckRule("webhook.received", "webhook", InboxStatus.RECEIVED,
              "PSP webhook stored but not applied (its task was lost or the worker is down)",
              _webhooks, _webhook_state, lambda pk: psp_webhook_process(webhook_id=int(pk))),
    StuckRule("dispute.evidence_pending", "dispute", "evidence_pending",
              "dispute evidence sent; the PSP has not answered its resends (the dispute is lost by default at its "
              "evidence_due_by): ask the PSP or send it by its dashboard",
              _evidence_pending, _evidence_state, lambda pk: dispute_evidence_resend(dispute_id=pk)),
    StuckRule("dispute.evidence_mismatch", "dispute", "evidence_mismatch",
              "the PSP says this dispute is not on this payment (unknown id, or another payment's): the evidence "
              "is not on it; correct the dispute id with the PSP, then the merchant sends it again",
              _evidence_mismatch, _evidence_state, None),
]


def sla_seconds(key: str) -> int:
    return int({**DEFAULT_SLAS, **(setting("PAYMENTS_STUCK_SLA_SECONDS", {}) or {})}[key])


# --- the sweep -----------------------------------------------------------------------------------
def stuck_sweep(*, at: dt.datetime | None = None) -> dict[str, int]:
    """Clear items that moved on, then re-drive and flag what is stuck now. Safe to run twice
    and concurrently (one open item per object and state; a re-drive is itself idempotent)."""
    at = at or now()
    counts = {"cleared": _clear_moved(at), "stuck": 0, "redriven": 0, "resolved": 0, "flagged": 0}
    for rule in STUCK_RULES:
        sla = sla_seconds(rule.key)
        for cand in rule.find(at - dt.timedelta(seconds=sla)):
            counts["stuck"] += 1
            item = _open_item(rule, cand, sla)
            if rule.redrive is not None and (
                item.last_redrive_at is None or item.last_redrive_at <= at - dt.timedelta(seconds=sla)
            ):
                counts["redriven"] += 1
                result = _redrive(rule, cand.object_id)
                item.redrives += 1
                item.last_redrive_at = at
                item.last_result = result[:255]
            state = rule.current(cand.object_id)
            if state != rule.state:
                item.cleared_at = at
                item.last_result = (item.last_result or f"moved to {state}")[:255]
                counts["resolved"] += 1
            elif item.flagged_at is None:
                item.flagged_at = at
                counts["flagged"] += 1
                logger.warning("%s %s stuck in %s since %s (SLA %ss): %s — flagged for operations",
                               rule.object_type, cand.object_id, rule.state, cand.since.isoformat(), sla, rule.reason)
            item.save()
    return counts


def _redrive(rule: StuckRule, object_id: str) -> str:
    try:
        rule.redrive(object_id)  # type: ignore[misc]
    except Exception as exc:  # one broken object must not stop the sweep
        logger.exception("re-driving %s %s failed", rule.object_type, object_id)
        return f"re-drive failed: {type(exc).__name__}"
    state = rule.current(object_id)
    return f"re-driven: now {state}" if state != rule.state else f"re-driven: still {state}"


def _open_item(rule: StuckRule, cand: Candidate, sla: int) -> StuckItem:
    open_ = StuckItem.objects.filter(object_type=rule.object_type, object_id=cand.object_id, state=rule.state,
                                     cleared_at__isnull=True)
    item = open_.first()
    if item is not None:
        return item
    try:
        with transaction.atomic():
            return StuckItem.objects.create(
                object_type=rule.object_type, object_id=cand.object_id, state=rule.state, since=cand.since,
                sla_seconds=sla, reason=rule.reason, payment_id=cand.payment_id, merchant_id=cand.merchant_id,
            )
    except IntegrityError:  # a concurrent sweep opened it first
        return open_.get()


def _clear_moved(at: dt.datetime) -> int:
    rules = {(r.object_type, r.state): r for r in STUCK_RULES}
    cleared = 0
    for item in StuckItem.objects.filter(cleared_at__isnull=True).iterator():
        rule = rules.get((item.object_type, item.state))
        state = rule.current(item.object_id) if rule else None
        if state != item.state:
            StuckItem.objects.filter(pk=item.pk, cleared_at__isnull=True).update(
                cleared_at=at, last_result=f"moved to {state or 'gone'}"[:255])
            cleared += 1
    return cleared


def stuck_open_counts() -> dict[str, int]:
    """Open items: flagged (waiting for a human) and being re-driven."""
    open_ = StuckItem.objects.filter(cleared_at__isnull=True)
    return {"flagged": open_.filter(flagged_at__isnull=False).count(),
            "redriving": open_.filter(flagged_at__isnull=True).count()}


__all__ = ["STUCK_RULES", "StuckRule", "stuck_open_counts", "stuck_sweep"]
