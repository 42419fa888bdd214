"""Reads of the payment page: a payment's whole story, each part one query (or a fixed few),
however many attempts, refunds or events it has (tests/backoffice/test_payments_admin.py counts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from ledger.selectors import journal_list_for_references
from payera.audit.models import AuditLogEntry
from payera.backoffice.models import StaffAction
from payera.events.models import WebhookDelivery
from payera.events.selectors import event_list_for_objects
from payments.backoffice.models import RefundApproval
from payments.models import Capture, Dispute, Payment, PaymentAttempt, PaymentEvent, Refund


@dataclass
class PaymentStory:
    payment: Payment
    attempts: list = field(default_factory=list)
    captures: list = field(default_factory=list)
    refunds: list = field(default_factory=list)
    approvals: list = field(default_factory=list)
    disputes: list = field(default_factory=list)
    journals: list | None = None  # None: the viewer may not read the ledger
    transitions: list = field(default_factory=list)
    events: list = field(default_factory=list)
    deliveries: list = field(default_factory=list)
    audit: list | None = None  # None: the viewer may not read the audit trail
    staff_actions: list = field(default_factory=list)


def payment_journal_references(*, attempts, refunds, disputes) -> list[str]:
    """The ledger references a payment's postings use (payments/postings.py)."""
    refs = []
    for attempt in attempts:
        refs += [f"capture:{attempt.id}", f"capture_fee:{attempt.id}"]
    for refund in refunds:
        refs += [f"refund:{refund.id}", f"refund_fee:{refund.id}"]
    for dispute in disputes:
        refs += [f"{kind}:{dispute.id}" for kind in ("chargeback", "chargeback_fee", "chargeback_won",
                                                    "chargeback_fee_won")]
    return refs


def payment_story(*, payment: Payment, with_audit: bool, with_ledger: bool = True) -> PaymentStory:
    story = PaymentStory(payment=payment)
    story.attempts = list(PaymentAttempt.objects.filter(payment=payment).order_by("sequence"))
    story.captures = list(Capture.objects.filter(payment=payment).order_by("created_at", "id"))
    story.refunds = list(Refund.objects.filter(payment=payment).order_by("created_at", "id"))
    story.approvals = list(
        RefundApproval.objects.filter(payment=payment).select_related("requested_by", "decided_by")
        .order_by("requested_at", "id")
    )
    story.disputes = list(Dispute.objects.filter(payment=payment).order_by("created_at", "id"))
    if with_ledger:
        refs = payment_journal_references(attempts=story.attempts, refunds=story.refunds, disputes=story.disputes)
        story.journals = list(journal_list_for_references(references=refs)) if refs else []
    story.transitions = list(PaymentEvent.objects.filter(payment=payment).order_by("id"))
    object_ids = [payment.id, *(r.id for r in story.refunds), *(d.id for d in story.disputes)]
    story.events = event_list_for_objects(merchant_id=payment.merchant_id, object_ids=object_ids,
                                          since=payment.created_at)
    if story.events:
        story.deliveries = list(
            WebhookDelivery.objects.filter(event_id__in=[e.id for e in story.events]).select_related(
                "event", "endpoint").order_by("created_at", "id")
        )
    staff_ids = [payment.id, *(a.id for a in story.approvals), *(d.id for d in story.deliveries)]
    story.staff_actions = list(
        StaffAction.objects.filter(object_id__in=staff_ids).select_related("user").order_by("created_at", "id")
    )
    if with_audit:
        types = ContentType.objects.get_for_models(Payment, Refund, Dispute, RefundApproval)
        ids = {Payment: [payment.id], Refund: [r.id for r in story.refunds], Dispute: [d.id for d in story.disputes],
               RefundApproval: [a.id for a in story.approvals]}
        query = Q()
        for model, pks in ids.items():
            if pks:
                query |= Q(content_type=types[model], object_pk__in=pks)
        story.audit = list(AuditLogEntry.objects.filter(query).select_related("actor").order_by("timestamp", "id"))
    return story


def payment_delivery_get(*, payment: Payment, delivery_id: str) -> WebhookDelivery | None:
    """A webhook delivery of an event about the payment (itself, its refunds or disputes: the
    deliveries its page shows), or None: another payment's delivery, or one about no payment,
    is not this payment's to replay."""
    ids = [payment.id, *Refund.objects.filter(payment=payment).values_list("id", flat=True),
           *Dispute.objects.filter(payment=payment).values_list("id", flat=True)]
    about = Q(event__data__object__id__in=ids) | Q(event__data__object__payment__in=ids)
    return WebhookDelivery.objects.filter(
        about, pk=delivery_id, merchant_id=payment.merchant_id, event__merchant_id=payment.merchant_id,
        event__created_at__gte=payment.created_at,
    ).first()


__all__ = ["PaymentStory", "payment_delivery_get", "payment_journal_references", "payment_story"]
