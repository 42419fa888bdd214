"""The contract's output objects. One `PaymentOutputSerializer` renders the payment for the API
answers and for the events' `data.object` (STYLE: shared, not nested per view)."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from payera.core.db import created_timestamp
from payments.method_types import METHOD_TYPES
from payments.models import SepaMandate


class PaymentCardOutputSerializer(serializers.Serializer):
    brand = serializers.CharField()
    last4 = serializers.CharField()
    exp_month = serializers.IntegerField()
    exp_year = serializers.IntegerField()


class PaymentSepaDebitOutputSerializer(serializers.Serializer):
    country = serializers.CharField(help_text="The IBAN's country (the IBAN itself is never shown).")
    last4 = serializers.CharField(help_text="The IBAN's last four characters.")
    mandate = serializers.CharField(allow_null=True, help_text="The SEPA mandate reference.")
    mandate_status = serializers.CharField(
        allow_null=True, help_text="active | inactive (revoked, or ended by a return: never debited again).")
    mandate_inactive_reason = serializers.CharField(
        allow_null=True, help_text="Why the mandate is inactive (who revoked it, or the return's reason code).")


class PaymentBankRedirectOutputSerializer(serializers.Serializer):
    bank = serializers.CharField()


def method_display(pm, type_: str) -> dict | None:
    """The type's masked view (`payments.method_types`), under the key of its type only."""
    if pm.type != type_:
        return None
    shown = METHOD_TYPES[type_].display(pm)
    if METHOD_TYPES[type_].mandate:
        row = SepaMandate.objects.filter(payment_method_id=pm.pk).values_list(
            "reference", "status", "inactive_reason").first()
        reference, status, reason = row or (None, None, "")
        shown.update(mandate=reference, mandate_status=status, mandate_inactive_reason=reason or None)
    return shown


class PaymentMethodOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    card = serializers.SerializerMethodField()
    sepa_debit = serializers.SerializerMethodField()
    bank_redirect = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer_id", allow_null=True)

    @extend_schema_field(PaymentCardOutputSerializer(allow_null=True))
    def get_card(self, pm) -> dict | None:
        return method_display(pm, "card")

    @extend_schema_field(PaymentSepaDebitOutputSerializer(allow_null=True))
    def get_sepa_debit(self, pm) -> dict | None:
        return method_display(pm, "sepa_debit")

    @extend_schema_field(PaymentBankRedirectOutputSerializer(allow_null=True))
    def get_bank_redirect(self, pm) -> dict | None:
        return method_display(pm, "bank_redirect")


class PaymentAttemptOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    connector = serializers.CharField()
    status = serializers.CharField()
    decline_code = serializers.SerializerMethodField()

    def get_decline_code(self, att) -> str | None:
        return att.decline_code or None


class PaymentLastErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    decline_code = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    status = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    amount_capturable = serializers.IntegerField()
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    amount_disputed = serializers.IntegerField(help_text="Taken back by open or lost disputes (chargebacks).")
    capture_method = serializers.CharField()
    customer = serializers.CharField(source="customer_id", allow_null=True)
    payment_method = PaymentMethodOutputSerializer(allow_null=True)
    attempts = serializers.SerializerMethodField()
    next_action = serializers.JSONField(allow_null=True)
    last_error = PaymentLastErrorSerializer(allow_null=True)
    description = serializers.SerializerMethodField()
    return_url = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    metadata = serializers.DictField(child=serializers.CharField())
    created = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "payment"

    @extend_schema_field(PaymentAttemptOutputSerializer(many=True))
    def get_attempts(self, obj) -> list:
        return PaymentAttemptOutputSerializer(sorted(obj.attempts.all(), key=lambda a: a.sequence), many=True).data

    def get_description(self, obj) -> str | None:
        return obj.description or None

    def get_return_url(self, obj) -> str | None:
        return obj.return_url or None

    def get_review(self, obj) -> str | None:
        """Why the payment is held for review by operations (e.g. an amount mismatch), or null."""
        return obj.review_reason or None

    def get_created(self, obj) -> int:
        return created_timestamp(obj.created_at)


class RefundOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    payment = serializers.CharField(source="payment_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.SerializerMethodField()
    failure_code = serializers.SerializerMethodField()
    created = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "refund"

    def get_reason(self, obj) -> str | None:
        return obj.reason or None

    def get_failure_code(self, obj) -> str | None:
        return obj.failure_code or None

    def get_created(self, obj) -> int:
        return created_timestamp(obj.created_at)


def _str(value) -> str | None:  # a CharField's output (DRF renders None as None)
    return None if value is None else str(value)


def _int(value) -> int | None:
    return None if value is None else int(value)


def _related(obj, name: str):
    try:
        return getattr(obj, name)
    except ObjectDoesNotExist:  # as DRF's get_attribute
        return None


def _method_object(pm) -> dict:
    return {"id": _str(pm.id), "type": _str(pm.type), "card": method_display(pm, "card"),
            "sepa_debit": method_display(pm, "sepa_debit"), "bank_redirect": method_display(pm, "bank_redirect"),
            "customer": _str(pm.customer_id)}


def _attempt_object(att) -> dict:
    return {"id": _str(att.id), "connector": _str(att.connector), "status": _str(att.status),
            "decline_code": att.decline_code or None}


def _payment_object(payment) -> dict:
    """`PaymentOutputSerializer(payment).data`, field by field as DRF renders it (a None value is
    None; CharField str(), IntegerField int(), DictField of CharField, JSONField as is), without
    building the serializer: DRF deep-copies every declared field of a serializer, and of its
    nested ones, per instance — ~5 % of a payment's CPU for the one render of its events and
    answer. The serializer stays the schema; tests/payments/test_render_payment.py checks both
    agree
    (and that no field is added to one and not the other)."""
    pm = _related(payment, "payment_method")
    last_error, metadata = payment.last_error, payment.metadata
    return {
        "id": _str(payment.id),
        "object": "payment",
        "status": _str(payment.status),
        "amount": _int(payment.amount),
        "currency": _str(payment.currency),
        "amount_capturable": _int(payment.amount_capturable),
        "amount_captured": _int(payment.amount_captured),
        "amount_refunded": _int(payment.amount_refunded),
        "amount_disputed": _int(payment.amount_disputed),
        "capture_method": _str(payment.capture_method),
        "customer": _str(payment.customer_id),
        "payment_method": None if pm is None else _method_object(pm),
        "attempts": [_attempt_object(a) for a in sorted(payment.attempts.all(), key=lambda a: a.sequence)],
        "next_action": payment.next_action,
        "last_error": None if last_error is None else PaymentLastErrorSerializer().to_representation(last_error),
        "description": payment.description or None,
        "return_url": payment.return_url or None,
        "review": payment.review_reason or None,
        "metadata": None if metadata is None else {
            str(k): (str(v) if v is not None else None) for k, v in metadata.items()},
        "created": created_timestamp(payment.created_at),
    }


def render_payment(payment, *, remember: bool = False) -> dict:
    """The contract's payment object. `remember`: kept on the instance for `payment_answer`
    (a recording transaction renders it once for its events and the API answer)."""
    data = _payment_object(payment)
    if remember:
        payment._rendered = data
    return data


def payment_rendered(payment) -> dict | None:
    """The render `remember`ed on this instance, if no transition has happened since."""
    return getattr(payment, "_rendered", None)


def payment_render_forget(payment) -> None:
    """A transition happened: the remembered render no longer shows the payment."""
    payment._rendered = None


def payment_answer(payment) -> dict:
    """The payment object of an API answer: the remembered render, else a fresh one."""
    return payment_rendered(payment) or render_payment(payment)


class DisputeOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.SerializerMethodField()
    payment = serializers.CharField(source="payment_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    reason = serializers.CharField(help_text="fraudulent | product_not_received | duplicate | debit_returned | general")
    status = serializers.CharField(help_text="needs_response | under_review | won | lost")
    fee = serializers.IntegerField(help_text="The chargeback fee taken with the disputed amount (returned if won).")
    evidence_submitted = serializers.SerializerMethodField(
        help_text="When the PSP took the merchant's evidence (unix seconds), else null.")
    evidence_pending = serializers.SerializerMethodField(
        help_text="Evidence was sent and the PSP's answer is not known yet; Payera sends it again until it is.")
    evidence_due_by = serializers.SerializerMethodField(
        help_text="The last moment the PSP takes evidence (unix seconds), null when it named none.")
    evidence_error = serializers.SerializerMethodField(
        help_text="Why the PSP did not take the last evidence sent (e.g. `evidence_past_due: …`), else null.")
    created = serializers.SerializerMethodField()

    def get_object(self, obj) -> str:
        return "dispute"

    def get_evidence_pending(self, obj) -> bool:
        return obj.evidence_pending_at is not None

    def get_evidence_error(self, obj) -> str | None:
        return obj.evidence_error or None

    def get_evidence_due_by(self, obj) -> int | None:
        return created_timestamp(obj.evidence_due_by) if obj.evidence_due_by else None

    def get_evidence_submitted(self, obj) -> int | None:
        return created_timestamp(obj.evidence_submitted_at) if obj.evidence_submitted_at else None

    def get_created(self, obj) -> int:
        return created_timestamp(obj.created_at)


def render_dispute(dispute) -> dict:
    return dict(DisputeOutputSerializer(dispute).data)


def render_refund(refund) -> dict:
    return dict(RefundOutputSerializer(refund).data)
