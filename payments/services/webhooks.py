"""Inbound PSP webhooks and the shopper's return from 3-D Secure.

Receive: verify the signature through the adapter (400 and a security record when bad), store
the raw body and the normalized event in the inbox (unique per connector and PSP event id),
answer 2xx; a Celery task applies it.

Apply: a verified event about an authorization, a capture or a refund is a hint — where the
PSP's status inquiry tells the truth (`Capabilities.inquiry_confirms_webhooks`), Payera asks it
and records what the PSP says, not what the message says; a hint the inquiry does not confirm
yet is parked and asked again. Idempotent and order-proof — every outcome goes through the same
recording functions as the synchronous answers (`apply_authorization`, `capture_record_outcome`,
`refund_record_outcome`), which ignore what is no longer allowed. An event for an attempt or
operation we do not know is parked and retried, then raised to operations (status `failed` in
the admin). A dispute event is a hint as well (`Capabilities.inquiry_confirms_disputes`): the
PSP's dispute inquiry is asked and its answer applied; a dispute the PSP does not know is refused
(`failed` at once), an inquiry that fails is parked and asked again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from functools import partial

from django.core.cache import cache
from django.db import IntegrityError, OperationalError, transaction

from payera.audit.services import record_auth_failure
from payera.core.db import outside_transaction
from payera.core.errors import ServiceUnavailableError
from payera.core.masking import mask_json_text
from payera.core.nul import has_unstorable, storable
from payera.events.dispatch import enqueue
from payments.locks import payment_lock
from payments.models import AS, Capture, InboxStatus, Payment, PaymentAttempt, PspWebhook, Refund
from payments.routing import AttemptVerdict as V
from payments.services.common import now, postings_last, setting
from payments.services.disputes import (
    DisputeAttemptUnknownError,
    DisputeEventRefusedError,
    dispute_apply_event,
    dispute_event_from_inquiry,
)
from payments.services.inquiry import (
    InquiryReferenceMismatchError,
    attempt_authentication_complete,
    attempt_inquire,
)
from payments.services.payments import (
    apply_authorization,
    attempt_record_outcome,
    capture_record_outcome,
    decline_normalize,
    payment_auto_capture_if_needed,
    void_number_of,
)
from payments.services.recovery import cancel_recover, inquiry_operations_record
from payments.services.refunds import refund_record_outcome
from psp_adapters.errors import (
    PspConfigurationError,
    PspError,
    PspReferenceNotFoundError,
    WebhookPayloadError,
    WebhookSignatureError,
)
from psp_adapters.port import (
    Decline,
    DeclineClass,
    DeclineCode,
    DisputeInfo,
    DisputeReason,
    DisputeStatus,
    NextAction,
    Outcome,
    PspEvent,
    PspEventKind,
    PspReference,
    PspState,
)
from psp_adapters.registry import get_adapter

logger = logging.getLogger("payera.payments")


# --- normalized event <-> JSON (the inbox keeps both the raw body and this) ------------------
def event_to_json(e: PspEvent) -> dict:
    return {
        "event_id": e.event_id, "kind": e.kind.value, "outcome": e.outcome.value,
        "payment": {"reference": e.payment.reference, "psp_reference": e.payment.psp_reference},
        "amount": e.amount, "currency": e.currency, "occurred_at": e.occurred_at.isoformat(),
        "operation_reference": e.operation_reference, "operation_psp_reference": e.operation_psp_reference,
        "decline": None if e.decline is None else {
            "code": e.decline.code.value, "decline_class": e.decline.decline_class.value,
            "psp_code": e.decline.psp_code, "message": e.decline.message,
        },
        "action": None if e.action is None else {"redirect_url": e.action.redirect_url},
        "amount_captured": e.amount_captured,
        "dispute": None if e.dispute is None else {
            "psp_dispute_id": e.dispute.psp_dispute_id, "reason": e.dispute.reason.value,
            "status": e.dispute.status.value, "psp_reason": e.dispute.psp_reason,
            "evidence_due_by": e.dispute.evidence_due_by.isoformat() if e.dispute.evidence_due_by else None,
        },
        "network_transaction_id": e.network_transaction_id,
        "payment_method_token": e.payment_method_token,
    }


def event_from_json(d: dict) -> PspEvent:
    decline = d.get("decline")
    return PspEvent(
        event_id=d["event_id"], kind=PspEventKind(d["kind"]), outcome=Outcome(d["outcome"]),
        payment=PspReference(d["payment"]["reference"], d["payment"]["psp_reference"]),
        amount=int(d["amount"]), currency=d["currency"], occurred_at=dt.datetime.fromisoformat(d["occurred_at"]),
        operation_reference=d.get("operation_reference"), operation_psp_reference=d.get("operation_psp_reference"),
        decline=None if not decline else Decline(
            code=DeclineCode(decline["code"]), decline_class=DeclineClass(decline["decline_class"]),
            psp_code=decline.get("psp_code", ""), message=decline.get("message", ""),
        ),
        action=NextAction(redirect_url=d["action"]["redirect_url"]) if d.get("action") else None,
        amount_captured=int(d.get("amount_captured") or 0),
        dispute=None if not d.get("dispute") else DisputeInfo(
            psp_dispute_id=d["dispute"]["psp_dispute_id"], reason=DisputeReason(d["dispute"]["reason"]),
            status=DisputeStatus(d["dispute"]["status"]), psp_reason=d["dispute"].get("psp_reason", ""),
            evidence_due_by=(dt.datetime.fromisoformat(d["dispute"]["evidence_due_by"])
                             if d["dispute"].get("evidence_due_by") else None),
        ),
        network_transaction_id=d.get("network_transaction_id"),
        payment_method_token=d.get("payment_method_token"),
    )


# --- receive ----------------------------------------------------------------------------
def psp_webhook_receive(*, connector: str, body: bytes, headers: dict[str, str],
                        remote_addr: str | None = None) -> PspWebhook:
    """Verify and store; raises WebhookSignatureError / WebhookPayloadError (400) and
    PspConfigurationError for an unknown connector (404 in the view)."""
    adapter = get_adapter(connector)
    try:
        event = adapter.parse_webhook(body=body, headers=headers)
    except WebhookSignatureError as exc:
        record_auth_failure(kind="psp_webhook", identifier=connector, reason=f"bad signature: {exc.message}"[:100],
                            remote_addr=remote_addr, request_id=None)
        raise
    event = _check_event(connector, event)
    return _inbox_store(connector=connector, event=event, body=body)


def _check_event(connector: str, e: PspEvent) -> PspEvent:
    """The event to store: the ids and references a signed body gave the adapter are text (the
    inbox's columns and the lookups by id need it), or the event is unreadable (400).

    PostgreSQL's text and jsonb hold no NUL character and no lone surrogate (JSON's `"\\ud800"`).
    The PSP signed the event, so it is authentic: such a character in its free text (the decline
    message, for people to read) is replaced by U+FFFD and the event applied — refused, the PSP
    would retry it for days and its outcome wait for recovery. One anywhere else (an id, a
    reference, the currency, a code Payera looks up) would name something else once replaced: that
    event is unreadable (400), not a 500 on the insert. A field is free text only when listed in
    `_free_text_storable`."""
    text = (e.payment.reference, e.currency)
    optional = (e.payment.psp_reference, e.operation_reference, e.operation_psp_reference,
                e.dispute.psp_dispute_id if e.dispute else None)
    if (not isinstance(e.event_id, str) or not e.event_id or not all(isinstance(v, str) for v in text)
            or not all(v is None or isinstance(v, str) for v in optional)):
        raise WebhookPayloadError(f"unreadable {e.kind.value} event: an id or reference is not a string",
                                  connector=connector)
    e = _free_text_storable(e)
    if has_unstorable(event_to_json(e)):
        raise WebhookPayloadError(f"unreadable {e.kind.value} event: a NUL character or a lone surrogate in an id,"
                                  " a reference or a code", connector=connector)
    return e


def _free_text_storable(e: PspEvent) -> PspEvent:
    """`e` with a NUL or a lone surrogate in its free text replaced by U+FFFD: the decline message."""
    if e.decline is not None and isinstance(e.decline.message, str):
        e = dataclasses.replace(e, decline=dataclasses.replace(e.decline, message=storable(e.decline.message)))
    return e


def _body_text(body: bytes) -> str:
    """The raw body as text for the `body` column: decoded as the JSON it is (json.loads, hence the
    adapters, reads UTF-8, UTF-16 and UTF-32 alike), masked, and with no NUL character left (the
    column holds none; a UTF-16 body read as UTF-8 was every other character a NUL, a 500), nor a
    lone surrogate (which masking's re-serialized JSON would carry unescaped)."""
    try:
        encoding = json.detect_encoding(body)
    except Exception:  # noqa: BLE001 - any body is kept, as text
        encoding = "utf-8"
    text = body.decode(encoding, errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return storable(mask_json_text(text))


_EVENT_ID_LENGTH = 128  # PspWebhook.event_id


def _inbox_event_id(event_id: str) -> str:
    """The inbox key of a PSP event id: the id itself, or for one longer than the column its start
    and a digest of the whole id — two events whose long ids share their start stay two events
    (`event_id[:128]` made the second a "repeat", answered 200 and never applied)."""
    if len(event_id) <= _EVENT_ID_LENGTH:
        return event_id
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{event_id[: _EVENT_ID_LENGTH - 33]}~{digest}"


class WebhookRepeatNotFoundError(ServiceUnavailableError):
    """The inbox refused the event as a repeat, yet its row is not there to read (deleted since):
    the PSP is asked to deliver it again (503), which stores it then."""

    code = "webhook_retry"
    default_message = "The webhook could not be stored yet. Deliver it again."


def _inbox_store(*, connector: str, event: PspEvent, body: bytes) -> PspWebhook:
    """Store the event once (unique per connector and event id) and queue its processing; a repeat
    returns the row stored first.

    A concurrent repeat's insert waits on the unique index for the first delivery's transaction:
    refused once that one committed, stored if it rolled back. The repeat's row is then read in a
    transaction of its own, after the refused one: read in the refused transaction, it was not seen
    under REPEATABLE READ (the snapshot predates the other commit: `DoesNotExist`, a 500), and
    SERIALIZABLE refuses the insert itself as a serialization failure. The settings pin READ
    COMMITTED (docs/decisions/read-committed.md); this stays correct under the others too."""
    key = _inbox_event_id(event.event_id)
    try:
        return _inbox_insert(connector=connector, event=event, body=body, key=key)
    except IntegrityError:
        pass
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _SERIALIZATION_FAILURE:
            raise
    row = PspWebhook.objects.filter(connector=connector, event_id=key).first()
    if row is None:
        logger.warning("PSP webhook %s:%s refused as a repeat but not found: asked again", connector, key)
        raise WebhookRepeatNotFoundError()
    return row


_SERIALIZATION_FAILURE = "40001"


@transaction.atomic(durable=True)
def _inbox_insert(*, connector: str, event: PspEvent, body: bytes, key: str) -> PspWebhook:
    reference = event.operation_reference or event.payment.reference or ""
    if len(event.event_id) > _EVENT_ID_LENGTH:
        # stored before the digest key, under `event_id[:128]`: the same event if its full id (in
        # `headers`) is this one, so a repeat redelivered since is not stored and applied again
        legacy = PspWebhook.objects.filter(
            connector=connector, event_id=event.event_id[:_EVENT_ID_LENGTH], headers__event_id=event.event_id
        ).first()
        if legacy is not None:
            return legacy
    row = PspWebhook.objects.create(
        connector=connector, event_id=key, kind=event.kind.value,
        reference=reference[:64],
        # the raw body is kept for people to read (the event is applied from `headers`, the
        # parsed event): a card number or secret the PSP sent along is masked as logs mask it, in
        # the parsed JSON (which stays valid JSON) when the body is JSON
        body=_body_text(body), headers=event_to_json(event),
    )  # a repeat raises IntegrityError: this transaction is over, the caller reads the row
    from payments.tasks import psp_webhook_process_task

    transaction.on_commit(partial(enqueue, psp_webhook_process_task, str(row.pk)), robust=True)
    return row


# --- apply ------------------------------------------------------------------------------
class _Park(Exception):
    pass


class _Refuse(Exception):
    """An event that must not be applied as it stands (e.g. a dispute naming money the payment
    never took): raised to operations at once, not retried."""


def psp_webhook_process(*, webhook_id: int) -> str:
    """Apply one stored webhook. Safe to run twice and in any order. One that raises is parked
    (tried again with backoff, then `failed` for operations), as one not confirmed yet."""
    row = PspWebhook.objects.filter(pk=webhook_id).first()
    if row is None or row.status in (InboxStatus.PROCESSED, InboxStatus.IGNORED, InboxStatus.FAILED):
        return row.status if row else "missing"
    actor = f"psp:{row.connector}"
    try:
        note = _apply(row.connector, event_from_json(row.headers), actor=actor)
    except _Park as exc:
        return _park(row, str(exc))
    except _Refuse as exc:
        return _refuse(row, str(exc))
    except Exception as exc:  # a row that cannot be applied must not stop the sweep for the others
        logger.exception("PSP webhook %s:%s could not be applied", row.connector, row.event_id)
        return _park(row, f"error: {type(exc).__name__}")
    # Two processors may apply one row at once (the task and a sweep): the effects are idempotent
    # under the payment lock, and the first to finish records the note; a later one changes nothing.
    PspWebhook.objects.filter(pk=row.pk).exclude(status__in=_DONE).update(
        status=InboxStatus.IGNORED if note.startswith("ignored") else InboxStatus.PROCESSED,
        note=note[:255], processed_at=now(), tries=row.tries + 1,
    )
    return note


_DONE = (InboxStatus.PROCESSED, InboxStatus.IGNORED, InboxStatus.FAILED)


def _park(row: PspWebhook, why: str) -> str:
    """Try the row again later (or fail it after the last try) — unless another worker finished it
    meanwhile: a finished row is never parked or failed again."""
    tries = row.tries + 1
    pending = PspWebhook.objects.filter(pk=row.pk).exclude(status__in=_DONE)
    if tries >= setting("PAYMENTS_WEBHOOK_PARK_MAX_TRIES", 10):
        logger.error("PSP webhook %s:%s still unmatched after %s tries: raised to operations",
                     row.connector, row.event_id, tries)
        pending.update(status=InboxStatus.FAILED, tries=tries, note=why[:255])
        return "failed"
    delay = min(2 ** tries, 600)
    pending.update(
        status=InboxStatus.PARKED, tries=tries, note=why[:255], next_try_at=now() + dt.timedelta(seconds=delay)
    )
    return "parked"


def _refuse(row: PspWebhook, why: str) -> str:
    logger.error("PSP webhook %s:%s refused, raised to operations: %s", row.connector, row.event_id, why)
    PspWebhook.objects.filter(pk=row.pk).exclude(status__in=_DONE).update(
        status=InboxStatus.FAILED, tries=row.tries + 1, note=f"refused: {why}"[:255], processed_at=now()
    )
    return "failed"


_CONFIRMABLE = (PspEventKind.AUTHORIZATION, PspEventKind.CAPTURE, PspEventKind.REFUND)
_FINAL = (Outcome.APPROVED, Outcome.DECLINED, Outcome.SOFT_DECLINED)


def _event_target(connector: str, e: PspEvent, *, confirmed: bool = False,
                  ) -> tuple[PaymentAttempt, Capture | Refund | None] | str:
    """The attempt an authorization, capture or refund event is about, and the operation for the
    latter two; a note (str) for an event to ignore (e.g. about another connector's operation);
    `_Park` for one we do not know (yet). `confirmed` (the PSP's inquiry is asked): a capture under
    an operation id that is none of ours, of an attempt of ours, is the PSP's own capture — a hint
    about the authorization (`(attempt, None)`), whose inquiry says it is captured."""
    if e.kind == PspEventKind.AUTHORIZATION:
        attempt = PaymentAttempt.objects.filter(pk=e.payment.reference, connector=connector).first()
        if attempt is None:
            raise _Park(f"unknown attempt {e.payment.reference}")
        return attempt, None
    ref = e.operation_reference or ""
    model = Capture if e.kind == PspEventKind.CAPTURE else Refund
    operation = model.objects.select_related("attempt").filter(pk=ref).first()
    if operation is None:
        at_authorization = ref.startswith("att_") or PaymentAttempt.objects.filter(pk=ref).exists()
        if e.kind == PspEventKind.CAPTURE and at_authorization:
            return "ignored: capture at authorization (recorded with the authorization)"
        if e.kind == PspEventKind.CAPTURE and confirmed and not ref.startswith("cap_"):
            attempt = PaymentAttempt.objects.filter(pk=e.payment.reference, connector=connector).first()
            if attempt is not None:
                return attempt, None
        raise _Park(f"unknown {e.kind.value} {ref}")
    if operation.attempt.connector != connector:  # a connector's word is about its own operations only
        return f"ignored: {e.kind.value} {operation.id} belongs to {operation.attempt.connector}"
    return operation.attempt, operation


def _apply(connector: str, e: PspEvent, *, actor: str) -> str:
    if e.kind in _CONFIRMABLE:
        if get_adapter(connector).capabilities.inquiry_confirms_webhooks:
            return _apply_confirmed(connector, e, actor=actor)
        target = _event_target(connector, e)
        if isinstance(target, str):
            return target
        attempt, operation = target
        if operation is None:
            _park_if_the_answer_decides(attempt, e.decline)
            verdict = _apply_authorization_event(attempt, e, actor=actor)
            payment_auto_capture_if_needed(payment_id=attempt.payment_id)
            return f"authorization: {verdict}"
        outcome = {"outcome": e.outcome, "psp_reference": e.operation_psp_reference or "", "decline": e.decline,
                   "actor": actor}
        if isinstance(operation, Capture):
            capture_record_outcome(capture_id=operation.id, **outcome)
        else:
            refund_record_outcome(refund_id=operation.id, **outcome)
        return e.kind.value
    if e.kind == PspEventKind.DISPUTE:
        if e.dispute is None:  # stored before disputes were handled (no dispute info kept)
            return "ignored: dispute event stored without its dispute"
        if get_adapter(connector).capabilities.inquiry_confirms_disputes:
            return _apply_dispute_confirmed(connector, e, actor=actor)
        try:
            return dispute_apply_event(connector=connector, event=e, actor=actor)
        except DisputeAttemptUnknownError as exc:
            raise _Park(str(exc)) from exc
        except DisputeEventRefusedError as exc:
            raise _Refuse(str(exc)) from exc
    if e.kind == PspEventKind.VOID:
        # a hint too: the PSP's inquiry says whether our void was done, refused or is still pending
        attempt = PaymentAttempt.objects.filter(pk=e.payment.reference, connector=connector).first()
        if attempt is None:
            raise _Park(f"unknown attempt {e.payment.reference}")
        verdict = cancel_recover(payment_id=attempt.payment_id, release=False)
        number = void_number_of(attempt.id, e.operation_reference)
        current = PaymentAttempt.objects.values_list("void_number", flat=True).get(pk=attempt.id)
        if verdict == "unknown" and number is not None and number < current and e.outcome == Outcome.APPROVED:
            # an earlier void the PSP refused (or answered "not processed") and then carried out
            # after all, while the PSP cannot be asked (or does not list it yet): nothing else would
            # ask (no cancel under way, so no claim for recovery) — parked, and applied when the
            # inquiry shows the authorization voided (its refusal, by contrast, is stale news)
            raise _Park(f"not confirmed yet: {connector} reports void {e.operation_reference} of {attempt.id}"
                        " succeeded; the inquiry does not say so (yet)")
        if verdict in ("pending", "unknown") and number is not None and number < current:
            # an earlier void of the attempt, refused (that is why there is a later one): its news
            # says nothing about the current one, which its own webhook or recovery resolves
            return f"ignored: void {e.operation_reference} of {attempt.id} was superseded by void {current}"
        if verdict in ("pending", "unknown"):
            raise _Park(f"not confirmed yet: {connector} reports the void of {attempt.id} as {verdict}")
        return f"void: {verdict} (confirmed by inquiry)"
    logger.warning("PSP %s event %s (%s) for %s is not handled yet", connector, e.event_id, e.kind, e.payment.reference)
    return f"ignored: {e.kind} not handled"


def _apply_confirmed(connector: str, e: PspEvent, *, actor: str) -> str:
    """The event is a hint: ask the PSP where the authorization and its operations stand (outside
    any transaction) and record that. Not confirmed yet (the PSP still says pending, does not
    know the attempt, or cannot be asked) → parked and asked again later."""
    target = _event_target(connector, e, confirmed=True)
    if isinstance(target, str):
        return target
    attempt, operation = target
    try:
        result = attempt_inquire(attempt, connector=connector, psp_reference=e.payment.psp_reference)
    except InquiryReferenceMismatchError as exc:
        # the event named our attempt with a pspReference of another authorization (a PSP bug, a
        # leaked webhook secret): that one's state says nothing about ours
        logger.error("PSP %s event %s names %s with pspReference %s, which the PSP says is %s's: ignored",
                     connector, e.event_id, attempt.id, e.payment.psp_reference, exc.answered.reference)
        return (f"ignored: {connector} says pspReference {e.payment.psp_reference} is not {attempt.id}'s"
                f" (it is {exc.answered.reference}'s)")
    except PspReferenceNotFoundError:
        raise _Park(f"not confirmed: {connector} does not know {attempt.id}") from None
    except PspError as exc:
        raise _Park(f"not confirmed yet: the inquiry failed ({exc.code})") from None
    if operation is not None:
        found = [op for op in result.operations if op.reference == operation.id]
        if not found or found[0].outcome == Outcome.PENDING:
            raise _Park(f"not confirmed yet: {connector} reports {operation.id} as "
                        f"{found[0].outcome.value if found else 'unknown'}")
        inquiry_operations_record(result)
        return f"{e.kind.value}: {found[0].outcome.value} (confirmed by inquiry)"
    if e.outcome in _FINAL and result.outcome not in _FINAL:
        raise _Park(f"not confirmed yet: {connector} still says {result.outcome.value}")
    if result.outcome in (Outcome.DECLINED, Outcome.SOFT_DECLINED):
        _park_if_the_answer_decides(attempt, result.decline)
    # our captures' outcomes first: a capture of ours the PSP lists is not a capture of its own
    inquiry_operations_record(result)
    verdict = attempt_record_outcome(attempt_id=attempt.id, result=result, actor=actor, source="webhook")
    if verdict == V.PENDING and result.state == PspState.CAPTURED:
        # captured at the PSP while a capture of ours is under way: its outcome comes first (the PSP
        # refuses ours if it captured on its own); asked again then
        raise _Park(f"not applied yet: {connector} reports {attempt.id} captured while a capture of ours is pending")
    payment_auto_capture_if_needed(payment_id=attempt.payment_id)
    note = f"authorization: {verdict} (confirmed by inquiry: {result.outcome.value})"
    if (e.outcome == Outcome.APPROVED) != (result.outcome == Outcome.APPROVED) and e.outcome in _FINAL:
        logger.warning("PSP %s event %s said %s for %s; the inquiry says %s: recorded the inquiry",
                       connector, e.event_id, e.outcome.value, attempt.id, result.outcome.value)
        note = f"authorization: {verdict} (the event said {e.outcome.value}; the inquiry said {result.outcome.value})"
    return note


def _park_if_the_answer_decides(attempt: PaymentAttempt, decline: Decline | None) -> None:
    """A decline another connector may still turn into a success (soft or technical, after the
    operations' table) for an attempt whose confirmation is still waiting for the PSP's answer
    (`started`, younger than PAYMENTS_STARTED_GRACE_SECONDS): the answer decides — it cascades,
    which a webhook cannot (it would fail the payment under the running confirmation). Parked, it
    is applied later and finds the attempt resolved; past the grace the confirmation's request is
    gone and the webhook settles the attempt, as recovery would."""
    if decline is None or not decline_normalize(attempt.connector, decline).may_cascade:
        return
    grace = now() - dt.timedelta(seconds=setting("PAYMENTS_STARTED_GRACE_SECONDS", 60))
    if PaymentAttempt.objects.filter(pk=attempt.pk, status=AS.STARTED, created_at__gt=grace).exists():
        raise _Park(f"{attempt.id} is still awaiting its confirmation's answer, which decides the cascade")


def _apply_dispute_confirmed(connector: str, e: PspEvent, *, actor: str) -> str:
    """A dispute event is a hint too: ask the PSP about that dispute (`inquire_dispute`, outside any
    transaction) and apply its answer — the PSP's status, amount and currency, never the message's —
    through `dispute_apply_event`, as reconciliation's dispute inquiry does (one dispute row per
    connector and PSP id, forward-only transitions, postings under business references: the two
    paths and any late or repeated webhook apply once). A dispute the PSP does not know on this
    attempt (a forged or misdirected event) is refused: raised to operations, nothing created or
    posted. The PSP cannot be asked → parked and asked again, as other inbound events."""
    info = e.dispute
    assert info is not None
    attempt = PaymentAttempt.objects.filter(pk=e.payment.reference, connector=connector).first()
    if attempt is None:
        raise _Park(f"unknown attempt {e.payment.reference}")
    try:
        with outside_transaction():
            found = get_adapter(connector).inquire_dispute(
                PspReference(attempt.id, attempt.psp_reference or e.payment.psp_reference or None),
                info.psp_dispute_id,
            )
    except PspReferenceNotFoundError:
        raise _Refuse(
            f"not confirmed: {connector} does not know dispute {info.psp_dispute_id} on {attempt.id}; not applied"
        ) from None
    except PspError as exc:
        raise _Park(f"not confirmed yet: the dispute inquiry failed ({exc.code})") from None
    try:
        note = dispute_apply_event(
            connector=connector, event=dispute_event_from_inquiry(found, event_id=e.event_id), actor=actor
        )
    except DisputeAttemptUnknownError as exc:
        raise _Park(str(exc)) from exc
    except DisputeEventRefusedError as exc:
        raise _Refuse(str(exc)) from exc
    said = f"{info.status.value}, {e.amount or found.amount} {(e.currency or found.currency).upper()}"
    told = f"{found.dispute.status.value}, {found.amount} {found.currency.upper()}"
    if said != told:
        logger.warning("PSP %s event %s said dispute %s is %s; the inquiry says %s: applied the inquiry",
                       connector, e.event_id, info.psp_dispute_id, said, told)
        return f"{note} (the event said {said}; the inquiry said {told})"
    return f"{note} (confirmed by inquiry: {found.dispute.status.value})"


@transaction.atomic(durable=True)
def _apply_authorization_event(attempt: PaymentAttempt, e: PspEvent, *, actor: str) -> str:
    payment = payment_lock(attempt.payment_id)
    attempt = PaymentAttempt.objects.get(pk=attempt.pk)
    if e.outcome == Outcome.APPROVED:
        state = PspState.CAPTURED if e.amount_captured else PspState.AUTHORIZED
    elif e.outcome == Outcome.REQUIRES_ACTION:
        state = PspState.REQUIRES_ACTION
    elif e.outcome == Outcome.PENDING:
        state = PspState.PENDING
    else:
        state = PspState.DECLINED
    with postings_last():
        verdict = apply_authorization(
            payment, attempt, outcome=e.outcome, state=state, psp_reference=e.payment.psp_reference or "",
            amount=e.amount, currency=e.currency, amount_captured=e.amount_captured, decline=e.decline,
            action_url=e.action.redirect_url if e.action else "", actor=actor, may_cascade=False, source="webhook",
            network_transaction_id=e.network_transaction_id, payment_method_token=e.payment_method_token,
        )
    return str(verdict)


def psp_webhook_process_due(*, limit: int = 200) -> int:
    """Apply stored webhooks not yet applied (received and never processed, or parked and due):
    the sweep behind the on-commit task, so nothing stored is ever lost."""
    cutoff = now()
    ids = list(
        PspWebhook.objects.filter(status=InboxStatus.RECEIVED, received_at__lte=cutoff).values_list("pk", flat=True)[
            :limit
        ]
    ) + list(
        PspWebhook.objects.filter(status=InboxStatus.PARKED, next_try_at__lte=cutoff).values_list("pk", flat=True)[
            :limit
        ]
    )
    for pk in ids:
        psp_webhook_process(webhook_id=pk)
    return len(ids)


# --- the shopper's return (3-D Secure / bank page) ----------------------------------------
# The shopper's return URL needs no authentication: one attempt is asked about at most once per
# this many seconds, so hits on it can not turn into a stream of calls to the PSP's API (which
# rate-limits Payera's account for every merchant).
RETURN_INQUIRY_INTERVAL_SECONDS = 2


def _return_inquiry_due(attempt_id: str) -> bool:
    try:
        return bool(cache.add(f"payera:return-inquiry:{attempt_id}", 1, timeout=RETURN_INQUIRY_INTERVAL_SECONDS))
    except Exception:  # noqa: BLE001 - the cache down: ask (the shopper's return matters more)
        logger.warning("return inquiry throttle unavailable for %s", attempt_id, exc_info=True)
        return True


def payment_authentication_complete(*, payment_id: str, actor: str = "shopper") -> Payment | None:
    """The shopper came back through Payera's return URL: ask the PSP where the authorization
    stands and record it. The webhook may have been first — then this changes nothing. At most
    one question per attempt per RETURN_INQUIRY_INTERVAL_SECONDS: a hit inside it answers the
    payment as it stands (a webhook, recovery or the next return settles it)."""
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None:
        return None
    attempt = payment.attempts.filter(status__in=[AS.REQUIRES_ACTION, AS.PENDING]).order_by("-sequence").first()
    if attempt is not None and _return_inquiry_due(attempt.id):
        try:  # an answer about another reference is refused (logged) by the helper: nothing recorded
            result = attempt_authentication_complete(attempt)
        except (PspError, PspConfigurationError):
            logger.warning("3-D Secure return of %s: the PSP could not be asked; webhook or recovery will settle it",
                           payment_id, exc_info=True)
        else:
            if result.outcome not in (Outcome.REQUIRES_ACTION,):
                attempt_record_outcome(attempt_id=attempt.id, result=result, actor=actor, source="return")
                payment_auto_capture_if_needed(payment_id=payment_id)
    return Payment.objects.get(pk=payment_id)

