"""Helpers every payments service shares: the transition log, outbox events, ledger posting,
the in-flight claim and the settings. Internal to payments.services."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_fsm import can_proceed

from ledger.services import journal_post_many
from ledger.types import JournalRequest
from payera.core.errors import PayeraError
from payera.core.rowsql import new_row, rows_insert
from payera.events.services import event_record, event_record_many
from payments.locks import payment_lock
from payments.models import OperationStatus, Payment, PaymentEvent
from payments.postings import Journal
from payments.serializers import payment_render_forget, render_payment, render_refund

logger = logging.getLogger("payera.payments")


class PaymentInProgressError(PayeraError):
    type = "invalid_request_error"
    code = "payment_in_progress"
    http_status = 409
    default_message = "Another operation on this payment is in progress; retry shortly."


class PaymentStateError(PayeraError):
    """The payment's status does not allow the operation (a 400 before any write)."""

    type = "invalid_request_error"
    code = "payment_unexpected_state"
    http_status = 400
    default_message = "The payment's status does not allow this operation."


def setting(name: str, default):
    return getattr(settings, name, default)


def now() -> dt.datetime:
    return timezone.now()


def transition(obj, verb: str, *, payment: Payment, actor: str, data: dict | None = None, **kwargs) -> bool:
    """Apply the FSM transition `verb` if allowed and log it (PaymentEvent). The caller holds the
    payment lock and saves. Returns False (nothing done) when the transition is not allowed."""
    method = getattr(obj, verb)
    if not can_proceed(method):
        return False
    before = obj.status
    method(**kwargs)
    payment_render_forget(payment)  # a render made before this transition is out of date
    transition_logged(obj, payment=payment, verb=verb, before=before, actor=actor, data=data)
    return True


def transition_logged(obj, *, payment: Payment, verb: str, before: str, actor: str, data: dict | None = None) -> None:
    """The PaymentEvent of a transition `obj` has just made (`transition` does both); under
    `postings_last()` it is inserted with the block's others at its end."""
    row = new_row(
        PaymentEvent,
        payment=payment,
        object_type=type(obj).__name__.lower().replace("paymentattempt", "attempt"),
        object_id=obj.pk,
        transition=verb,
        from_status=before,
        to_status=obj.status,
        actor=actor[:80],
        data=data or {},
    )
    pending = getattr(_postings, "events", None)
    if pending is not None:
        pending.append(row)
    else:
        rows_insert([row])


def emit(payment: Payment, *types: str) -> None:
    """Outbox events with the contract's payment object (rendered once), in the open transaction."""
    event_record_many(merchant_id=payment.merchant_id, types=types, data=render_payment(payment, remember=True))
    # a booking follows its payment in the same transaction (payments/services/booking_sync.py)
    from payments.services.booking_sync import booking_follow_payment

    booking_follow_payment(payment)


def emit_refund(refund, type_: str) -> None:
    event_record(merchant_id=refund.merchant_id, type=type_, data=render_refund(refund))


_postings = threading.local()


@contextmanager
def postings_last() -> Iterator[None]:
    """Inside a use case's atomic block: collect the journals `post()` is given and post them all
    in one ledger call at the end of the block, right before the commit. The ledger holds the
    account rows (a merchant's pending account is one row) from the posting to the commit, so
    posting last keeps that window to the commit itself (docs/decisions/ledger-posting-transactions.md).

    The PaymentEvents of the block's transitions are collected too and inserted in one statement
    at its end, in the same transaction (nothing in a recording block reads them back)."""
    _postings.queue = []
    _postings.events = []
    try:
        yield
    except BaseException:
        logged, _postings.events = _postings.events, None
        if logged and connection.in_atomic_block and not connection.needs_rollback:
            rows_insert(logged)  # a caller may go on and commit: keep the log whole
        raise
    else:
        logged, _postings.events = _postings.events, None
        if logged:
            rows_insert(logged)
        queued, _postings.queue = _postings.queue, None
        if queued:
            assert connection.in_atomic_block, "post inside the transition's transaction"
            journal_post_many(queued, atomic=True)
    finally:
        _postings.queue = None
        _postings.events = None


def post(journals: Iterable[Journal], *, occurred_at: dt.datetime, metadata: dict) -> None:
    """Post journals in the caller's transaction (the same block as the transition): queued for
    the end of the block under `postings_last()`, else at once. Idempotent on the references."""
    requests = [
        JournalRequest(
            reference=j.reference, lines=j.lines, occurred_at=occurred_at, memo=j.memo, kind=j.kind,
            metadata=metadata,
        )
        for j in journals
    ]
    if not requests:
        return
    assert connection.in_atomic_block, "post inside the transition's transaction"
    queue = getattr(_postings, "queue", None)
    if queue is not None:
        queue.extend(requests)
    else:
        journal_post_many(requests, atomic=True)


def inflight_claim(payment: Payment, operation: str) -> None:
    """Claim the payment's one in-flight mutation (under its row lock). A claim older than
    PAYMENTS_INFLIGHT_TIMEOUT is a crashed request's and may be taken over."""
    timeout = dt.timedelta(seconds=setting("PAYMENTS_INFLIGHT_TIMEOUT", 120))
    if payment.inflight and payment.inflight_at and payment.inflight_at > now() - timeout:
        raise PaymentInProgressError()
    payment.inflight = operation
    payment.inflight_at = now()


def inflight_release(payment: Payment) -> None:
    payment.inflight = ""
    payment.inflight_at = None


def operation_for_outcome(model, operation_id: str, *, inflight: str, release: bool,
                          succeeded_too: bool = False, failed_too: bool = False):
    """A capture's or refund's outcome is about to be recorded: its payment (locked) and the
    operation, or None when the operation is no longer pending (later news of a finished operation:
    logged and ignored; with `succeeded_too`, a succeeded one is returned as well: a refund the PSP
    fails after it succeeded; with `failed_too`, a failed one: a refund failed as unknown at the PSP
    that the PSP reports done). `release`: the crashed request's in-flight claim `inflight` is
    released too (saved even when the news is stale)."""
    payment = payment_lock(model.objects.values_list("payment_id", flat=True).get(pk=operation_id))
    operation = model.objects.select_related("attempt").get(pk=operation_id)
    if release and payment.inflight == inflight:
        inflight_release(payment)
        payment.save()
    if operation.status != OperationStatus.PENDING and not (
            (succeeded_too and operation.status == OperationStatus.SUCCEEDED)
            or (failed_too and operation.status == OperationStatus.FAILED)):
        logger.info("stale %s outcome for %s (%s) ignored", inflight, operation.id, operation.status)
        return None
    return payment, operation


def recovery_delay(inquiries: int) -> dt.timedelta:
    """When to ask the PSP next about an unknown outcome: 15 s, 1 m, 3 m, 1 h, then daily."""
    schedule = setting("PAYMENTS_RECOVERY_SCHEDULE", [15, 60, 180, 3600])
    if inquiries < len(schedule):
        return dt.timedelta(seconds=schedule[inquiries])
    return dt.timedelta(days=1)
